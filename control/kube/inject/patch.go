package inject

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The namespace label, the pod annotations the injector reads, and what it
// adds.
const (
	// LabelInject, set to "enabled" on a namespace, opts its pods in (the
	// webhook's namespaceSelector).
	LabelInject = "weftmesh.io/inject"
	// AnnotationInject "false" (or "disabled") on a pod opts it out;
	// "true" or "enabled" is the same as no annotation.
	AnnotationInject = "weftmesh.io/inject"
	// AnnotationNode is the sidecar's node id (--node); default the pod's
	// service account name.
	AnnotationNode = "weftmesh.io/node"
	// AnnotationImage is the sidecar's image for this pod.
	AnnotationImage = "weftmesh.io/image"
	// AnnotationInboundPort is the sidecar's inbound port for this pod
	// (the container port weft-inbound).
	AnnotationInboundPort = "weftmesh.io/inbound-port"

	// ContainerName is the sidecar container's name: a pod that has a
	// container of that name is left as it is.
	ContainerName = "weft"
	// InboundPortName names the inbound container port (a Service's
	// targetPort).
	InboundPortName = "weft-inbound"

	tokenVolume = "weft-token"
	caVolume    = "weft-ca"
	cacheVolume = "weft-cache"
	tokenDir    = "/var/run/secrets/weft"
	caDir       = "/etc/weft/ca"
	cacheDir    = "/var/cache/weft"
)

// nodeIDRE is control/mesh's rule for a Sidecar's name (a node id).
var nodeIDRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)

// Op is one JSON Patch operation (RFC 6902); the injector only adds.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// Injector builds sidecar patches from validated Values.
type Injector struct {
	v Values
	// resources are the sidecar's requests and limits, parsed once.
	resources corev1.ResourceRequirements
}

// New validates v (filling in its defaults) and returns its injector.
func New(v Values) (*Injector, error) {
	if err := v.Validate(); err != nil {
		return nil, err
	}
	in := &Injector{v: v}
	add := func(list *corev1.ResourceList, name corev1.ResourceName, q string) {
		if q == "" {
			return
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = resource.MustParse(q) // Validate parsed it
	}
	add(&in.resources.Requests, corev1.ResourceCPU, v.CPURequest)
	add(&in.resources.Requests, corev1.ResourceMemory, v.MemoryRequest)
	add(&in.resources.Limits, corev1.ResourceCPU, v.CPULimit)
	add(&in.resources.Limits, corev1.ResourceMemory, v.MemoryLimit)
	return in, nil
}

// Values are the injector's values, defaults filled in.
func (in *Injector) Values() Values { return in.v }

// Patch returns the JSON patch that adds the sidecar to pod, or no
// operations and why the pod is left alone (opted out, already has a weft
// container, host network). An error refuses the pod: an annotation with a
// bad value, or a pod whose volumes or ports collide with the sidecar's.
func (in *Injector) Patch(pod *corev1.Pod) (ops []Op, skip string, err error) {
	switch v := pod.Annotations[AnnotationInject]; v {
	case "", "true", "enabled":
	case "false", "disabled":
		return nil, "annotation " + AnnotationInject + ": " + v, nil
	default:
		return nil, "", fmt.Errorf("annotation %s: %q: want \"false\" to opt the pod out (or \"true\")", AnnotationInject, v)
	}
	for _, c := range allContainers(pod) {
		if c.Name == ContainerName {
			return nil, "the pod already has a " + ContainerName + " container", nil
		}
	}
	if pod.Spec.HostNetwork {
		return nil, "the pod uses the host's network", nil
	}
	node := pod.Spec.ServiceAccountName
	if node == "" {
		// The ServiceAccount admission plugin sets it before webhooks run;
		// without it, the API server refuses a projected token.
		node = "default"
		ops = append(ops, Op{"add", "/spec/serviceAccountName", node})
	}
	if a, ok := pod.Annotations[AnnotationNode]; ok {
		node = a
	}
	image := in.v.Image
	if a, ok := pod.Annotations[AnnotationImage]; ok {
		image = a
	}
	port := in.v.InboundPort
	var errs []error
	if !nodeIDRE.MatchString(node) {
		errs = append(errs, fmt.Errorf("node id %q (annotation %s, else the service account): use letters, digits, '.', '_' and '-' (at most 253)", node, AnnotationNode))
	}
	if err := checkImage(image); err != nil {
		errs = append(errs, fmt.Errorf("annotation %s: %w", AnnotationImage, err))
	}
	if a, ok := pod.Annotations[AnnotationInboundPort]; ok {
		n, err := strconv.ParseInt(a, 10, 32)
		if err != nil || n < 1 || n > 65535 {
			errs = append(errs, fmt.Errorf("annotation %s: %q: want a port, 1..65535", AnnotationInboundPort, a))
		}
		port = int32(n)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == tokenVolume || v.Name == caVolume || v.Name == cacheVolume {
			errs = append(errs, fmt.Errorf("volume %q: the sidecar's (%s, %s, %s) would collide with it; rename it", v.Name, tokenVolume, caVolume, cacheVolume))
		}
	}
	for _, c := range allContainers(pod) {
		for _, p := range c.Ports {
			if p.ContainerPort == port && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
				errs = append(errs, fmt.Errorf("container %q: port %d is the sidecar's inbound port; pick another with annotation %s", c.Name, port, AnnotationInboundPort))
			}
			if p.Name == InboundPortName {
				errs = append(errs, fmt.Errorf("container %q: port name %q is the sidecar's", c.Name, InboundPortName))
			}
		}
	}
	if len(errs) > 0 {
		return nil, "", fmt.Errorf("weft sidecar injection: %w", errors.Join(errs...))
	}

	sidecar := in.container(node, image, port)
	if *in.v.NativeSidecar {
		// First: later init containers may then use the mesh.
		always := corev1.ContainerRestartPolicyAlways
		sidecar.RestartPolicy = &always
		if len(pod.Spec.InitContainers) == 0 {
			ops = append(ops, Op{"add", "/spec/initContainers", []corev1.Container{sidecar}})
		} else {
			ops = append(ops, Op{"add", "/spec/initContainers/0", sidecar})
		}
	} else {
		// Last: kubectl logs and exec keep the app as their default.
		if len(pod.Spec.Containers) == 0 {
			ops = append(ops, Op{"add", "/spec/containers", []corev1.Container{sidecar}})
		} else {
			ops = append(ops, Op{"add", "/spec/containers/-", sidecar})
		}
	}
	vols := in.volumes()
	if len(pod.Spec.Volumes) == 0 {
		ops = append(ops, Op{"add", "/spec/volumes", vols})
	} else {
		for _, v := range vols {
			ops = append(ops, Op{"add", "/spec/volumes/-", v})
		}
	}
	return ops, "", nil
}

// allContainers are the pod's init and app containers (ephemeral ones
// cannot be set at creation).
func allContainers(pod *corev1.Pod) []corev1.Container {
	return append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...)
}

// container is the sidecar as deploy/kubernetes/example-workload.yaml
// writes it by hand.
func (in *Injector) container(node, image string, port int32) corev1.Container {
	no, yes := false, true
	uid := in.v.RunAsUser
	return corev1.Container{
		Name:            ContainerName,
		Image:           image,
		ImagePullPolicy: corev1.PullPolicy(in.v.ImagePullPolicy),
		Args: []string{
			"proxy",
			"--control=" + in.v.ControlURL,
			"--control-ca=" + caDir + "/ca.pem",
			"--node=" + node,
			"--join-token-file=" + tokenDir + "/token",
			"--snapshot-cache=" + cacheDir + "/snapshots",
			"--wasm-cache=" + cacheDir + "/wasm",
		},
		Ports:     []corev1.ContainerPort{{Name: InboundPortName, ContainerPort: port, Protocol: corev1.ProtocolTCP}},
		Resources: *in.resources.DeepCopy(),
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &no,
			ReadOnlyRootFilesystem:   &yes,
			RunAsNonRoot:             &yes,
			RunAsUser:                &uid,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: tokenVolume, MountPath: tokenDir, ReadOnly: true},
			{Name: caVolume, MountPath: caDir, ReadOnly: true},
			{Name: cacheVolume, MountPath: cacheDir},
		},
	}
}

// volumes are the projected token (audience and lifetime from the
// values), the CA bundle's ConfigMap, and the snapshot and module cache.
func (in *Injector) volumes() []corev1.Volume {
	exp := in.v.TokenExpirationSeconds
	return []corev1.Volume{
		{Name: tokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: in.v.Audience, ExpirationSeconds: &exp, Path: "token"}}}}}},
		{Name: caVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: in.v.CAConfigMap},
			Items:                []corev1.KeyToPath{{Key: "ca.pem", Path: "ca.pem"}}}}},
		{Name: cacheVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
}

// joinErrors formats problems one per line for an admission message.
func joinErrors(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
