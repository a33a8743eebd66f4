package kube_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/internal/kubetest"
	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/kube"
	"github.com/weftmesh/weft/control/kube/inject"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/control/store"
)

// registerInjector registers deploy/kubernetes/inject.yaml's webhook
// configuration (its name, selector, failure policy, timeout, empty
// caBundle) with the client config pointed at url. It is deleted when the
// test ends.
func registerInjector(t *testing.T, e *kubetest.Env, url string) *admregv1.MutatingWebhookConfiguration {
	t.Helper()
	objs := manifestObjects(t, "inject.yaml")
	if len(objs) != 1 {
		t.Fatalf("inject.yaml: %d objects, want the MutatingWebhookConfiguration", len(objs))
	}
	var mwc admregv1.MutatingWebhookConfiguration
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[0].Object, &mwc); err != nil {
		t.Fatal(err)
	}
	if len(mwc.Webhooks) != 1 || len(mwc.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Fatalf("inject.yaml: want one webhook with an empty caBundle (the control plane fills it in): %+v", mwc.Webhooks)
	}
	name := mwc.Name
	mwc.Webhooks[0].ClientConfig = admregv1.WebhookClientConfig{URL: &url}
	ctx, cancel := context.WithTimeout(context.Background(), gwWait)
	defer cancel()
	if _, err := e.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting the webhook configuration: %v", err)
		}
	})
	return &mwc
}

// waitInjecting waits until the API server sends ns's pods to the webhook
// and takes its answer (probing with dry-run pods): its informer has the
// configuration, with a caBundle that verifies the control plane.
func waitInjecting(t *testing.T, e *kubetest.Env, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*gwWait)
	defer cancel()
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}}}
	gwEventually(t, "the API server calling the webhook", func() (string, bool) {
		got, err := e.Client.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err.Error(), false
		}
		return "no sidecar", sidecarOf(got) != nil
	})
}

// manifestValues are the injection values of control-plane.yaml: the
// weft-inject ConfigMap, mounted where the Deployment's -inject-config
// reads it.
func manifestValues(t *testing.T) inject.Values {
	t.Helper()
	var file, mount, arg string
	for _, o := range manifestObjects(t, "control-plane.yaml") {
		switch o.GetKind() {
		case "ConfigMap":
			if o.GetName() == "weft-inject" {
				file, _, _ = unstructured.NestedString(o.Object, "data", "values.yaml")
			}
		case "Deployment":
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
				t.Fatal(err)
			}
			vols := map[string]string{}
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.ConfigMap != nil {
					vols[v.Name] = v.ConfigMap.Name
				}
			}
			c := d.Spec.Template.Spec.Containers[0]
			for _, m := range c.VolumeMounts {
				if vols[m.Name] == "weft-inject" {
					mount = m.MountPath
				}
			}
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "-inject-config="); ok {
					arg = v
				}
			}
		}
	}
	if file == "" || mount == "" || arg != mount+"/values.yaml" {
		t.Fatalf("control-plane.yaml: the weft-inject ConfigMap's values.yaml (%d bytes), mounted at %q, must be what -inject-config=%q reads", len(file), mount, arg)
	}
	path := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := inject.LoadValues(path)
	if err != nil {
		t.Fatalf("control-plane.yaml weft-inject: %v", err)
	}
	return v
}

func sidecarOf(p *corev1.Pod) *corev1.Container {
	for i, c := range p.Spec.InitContainers {
		if c.Name == inject.ContainerName {
			return &p.Spec.InitContainers[i]
		}
	}
	for i, c := range p.Spec.Containers {
		if c.Name == inject.ContainerName {
			return &p.Spec.Containers[i]
		}
	}
	return nil
}

func volume(p *corev1.Pod, name string) *corev1.Volume {
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].Name == name {
			return &p.Spec.Volumes[i]
		}
	}
	return nil
}

// Sidecar injection on a real API server: the manifest's webhook
// configuration, pointed at a control plane's /inject over TLS with its CA
// as caBundle, injects the pods of a labelled namespace (and only those
// not opted out, without a weft container of their own), refuses a pod
// whose port collides, leaves an unlabelled namespace alone, and the
// injected sidecar's node id and token audience are what the control
// plane accepts a join with. With the control plane gone, pods of a
// labelled namespace are refused (failurePolicy Fail).
func TestSidecarInjection(t *testing.T) {
	e := kubetest.Shared(t)
	on, off := e.NewNamespace("inject-on"), e.NewNamespace("inject-off")
	ctx, cancel := context.WithTimeout(context.Background(), 5*gwWait)
	defer cancel()
	nsOn, err := e.Client.CoreV1().Namespaces().Get(ctx, on, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsOn.Labels[inject.LabelInject] = "enabled"
	if _, err := e.Client.CoreV1().Namespaces().Update(ctx, nsOn, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{on, off} {
		if _, err := e.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "cart"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	values := manifestValues(t)
	// The configuration is there first, with an empty caBundle, as after
	// kubectl apply -f inject.yaml; the control plane, as the manifests'
	// service account, fills it in (-inject-webhook).
	addr := meshtest.FreeAddr(t)
	mwc := registerInjector(t, e, "https://"+addr+"/inject")
	cp := meshtest.StartControl(t, server.Options{Addr: addr, DataDir: t.TempDir(), CA: &ca.Options{TrustDomain: "td.test"},
		Kube: &kube.Options{Config: controlPlaneConfig(t, e)}, KubeAudience: "weft-test",
		Inject: &values, InjectWebhook: mwc.Name})
	var closeOnce sync.Once
	closeCP := func() { closeOnce.Do(func() { _ = cp.Close() }) }
	t.Cleanup(closeCP)
	// The node id the sidecar will join with (its service account's name).
	if _, err := cp.Store().Apply(store.Change{Who: "test", Source: store.SourceAPI, Puts: []*mesh.Resource{{Kind: mesh.KindSidecar, Namespace: on, Name: "cart",
		Spec: &mesh.SidecarSpec{Outbound: "127.0.0.1:0", ServiceAccount: "cart"}}}}); err != nil {
		t.Fatal(err)
	}
	waitInjecting(t, e, on)
	caPEM, err := os.ReadFile(cp.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	stored, err := e.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwc.Name, metav1.GetOptions{})
	if err != nil || string(stored.Webhooks[0].ClientConfig.CABundle) != string(caPEM) {
		t.Fatalf("the caBundle the control plane wrote is not its ca.pem: %v\n%s", err, stored.Webhooks[0].ClientConfig.CABundle)
	}

	pods := e.Client.CoreV1().Pods
	create := func(ns, name string, annotations map[string]string, containers ...corev1.Container) (*corev1.Pod, error) {
		t.Helper()
		if len(containers) == 0 {
			containers = []corev1.Container{{Name: "app", Image: "example.com/cart:1"}}
		}
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
			Spec: corev1.PodSpec{ServiceAccountName: "cart", Containers: containers}}
		if _, err := pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		return pods(ns).Get(ctx, name, metav1.GetOptions{}) // what the API server stored
	}
	mustCreate := func(ns, name string, annotations map[string]string, containers ...corev1.Container) *corev1.Pod {
		t.Helper()
		p, err := create(ns, name, annotations, containers...)
		if err != nil {
			t.Fatalf("creating pod %s/%s: %v", ns, name, err)
		}
		return p
	}

	// A pod in the labelled namespace: the sidecar, as the values say.
	p := mustCreate(on, "cart-1", nil)
	sc := sidecarOf(p)
	if sc == nil || len(p.Spec.InitContainers) != 1 || len(p.Spec.Containers) != 1 {
		t.Fatalf("cart-1 was not injected: %s", toYAML(t, p.Spec))
	}
	wantArgs := []string{"proxy", "--control=" + cp.URL(), "--control-ca=/etc/weft/ca/ca.pem", "--node=cart",
		"--join-token-file=/var/run/secrets/weft/token", "--snapshot-cache=/var/cache/weft/snapshots", "--wasm-cache=/var/cache/weft/wasm"}
	no, yes, uid := false, true, int64(65532)
	wantSC := &corev1.SecurityContext{AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes, RunAsNonRoot: &yes, RunAsUser: &uid,
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	wantRes := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(values.CPURequest), corev1.ResourceMemory: resource.MustParse(values.MemoryRequest)},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(values.MemoryLimit)}}
	if sc.Image != values.Image || sc.ImagePullPolicy != corev1.PullPolicy(values.ImagePullPolicy) || !equality.Semantic.DeepEqual(sc.Resources, wantRes) || !equality.Semantic.DeepEqual(sc.Args, wantArgs) ||
		sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways ||
		len(sc.Ports) != 1 || sc.Ports[0] != (corev1.ContainerPort{Name: "weft-inbound", ContainerPort: 15006, Protocol: corev1.ProtocolTCP}) ||
		!equality.Semantic.DeepEqual(sc.SecurityContext, wantSC) || len(sc.VolumeMounts) != 3 {
		t.Fatalf("cart-1's sidecar:\n%s", toYAML(t, sc))
	}
	tok, caVol, cache := volume(p, "weft-token"), volume(p, "weft-ca"), volume(p, "weft-cache")
	if tok == nil || tok.Projected == nil || len(tok.Projected.Sources) != 1 || caVol == nil || caVol.ConfigMap == nil || cache == nil || cache.EmptyDir == nil {
		t.Fatalf("cart-1's volumes:\n%s", toYAML(t, p.Spec.Volumes))
	}
	sat := tok.Projected.Sources[0].ServiceAccountToken
	if sat == nil || sat.Audience != "weft-test" || *sat.ExpirationSeconds != 3600 || sat.Path != "token" || caVol.ConfigMap.Name != "weft-ca" {
		t.Fatalf("cart-1's token and CA volumes:\n%s", toYAML(t, p.Spec.Volumes))
	}

	// What the kubelet would write in the token volume: a token for that
	// audience, bound to the pod. The control plane takes it for the
	// injected node id.
	exp := *sat.ExpirationSeconds
	tr, err := e.Client.CoreV1().ServiceAccounts(on).CreateToken(ctx, "cart", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{sat.Audience}, ExpirationSeconds: &exp,
		BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src := meshtest.JoinWith(t, cp.URL(), meshtest.Roots(t, cp), strings.TrimPrefix(sc.Args[3], "--node="), tr.Status.Token)
	select {
	case <-src.Ready():
	case <-time.After(gwWait):
		t.Fatal("the injected sidecar's node and token got no certificate")
	}
	if id := src.SVID().ID; id != "spiffe://td.test/ns/"+on+"/sa/cart" {
		t.Fatalf("SPIFFE ID %s", id)
	}

	// The example Deployment's pod: injected, its node the service
	// account, its Service's targetPort the sidecar's port.
	for _, o := range manifestObjects(t, "example-injected.yaml") {
		switch o.GetKind() {
		case "Deployment":
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Client.CoreV1().ServiceAccounts(on).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: d.Spec.Template.Spec.ServiceAccountName}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			p := &corev1.Pod{ObjectMeta: *d.Spec.Template.ObjectMeta.DeepCopy(), Spec: d.Spec.Template.Spec}
			p.Name = "reviews-1"
			if _, err := pods(on).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Fatalf("the example's pod: %v", err)
			}
			if p, err = pods(on).Get(ctx, "reviews-1", metav1.GetOptions{}); err != nil {
				t.Fatal(err)
			}
			if sc := sidecarOf(p); sc == nil || sc.Args[3] != "--node=reviews" || sc.Ports[0].Name != "weft-inbound" {
				t.Fatalf("the example's pod:\n%s", toYAML(t, p.Spec))
			}
		case "Service":
			if tp := o.Object["spec"].(map[string]any)["ports"].([]any)[0].(map[string]any)["targetPort"]; tp != inject.InboundPortName {
				t.Fatalf("the example's Service targets %v, not the sidecar's port %s", tp, inject.InboundPortName)
			}
		case "Namespace":
			if o.GetLabels()[inject.LabelInject] != "enabled" {
				t.Fatalf("the example's namespace is not labelled for injection: %v", o.GetLabels())
			}
		}
	}

	// Annotations pick the node id, the image and the inbound port.
	p = mustCreate(on, "cart-2", map[string]string{inject.AnnotationNode: "cart-canary", inject.AnnotationImage: "example.com/weft:canary", inject.AnnotationInboundPort: "16006"})
	if sc := sidecarOf(p); sc == nil || sc.Args[3] != "--node=cart-canary" || sc.Image != "example.com/weft:canary" || sc.Ports[0].ContainerPort != 16006 {
		t.Fatalf("cart-2's sidecar:\n%s", toYAML(t, p.Spec))
	}
	// Opted out, unlabelled, and already with a weft container: as created.
	for _, tc := range []struct {
		ns, name    string
		annotations map[string]string
		containers  []corev1.Container
	}{
		{on, "opted-out", map[string]string{inject.AnnotationInject: "false"}, nil},
		{off, "unlabelled", nil, nil},
		{on, "hand-written", nil, []corev1.Container{{Name: "app", Image: "example.com/cart:1"}, {Name: "weft", Image: "example.com/weft:mine", Args: []string{"proxy", "-c", "/etc/weft.yaml"}}}},
	} {
		p := mustCreate(tc.ns, tc.name, tc.annotations, tc.containers...)
		if len(p.Spec.InitContainers) != 0 || volume(p, "weft-token") != nil {
			t.Errorf("%s/%s was injected:\n%s", tc.ns, tc.name, toYAML(t, p.Spec))
		}
		if tc.name == "hand-written" && (len(p.Spec.Containers) != 2 || p.Spec.Containers[1].Image != "example.com/weft:mine") {
			t.Errorf("the hand-written sidecar changed:\n%s", toYAML(t, p.Spec))
		}
	}
	// A pod whose port is the sidecar's is refused, with the reason.
	_, err = create(on, "clash", nil, corev1.Container{Name: "app", Image: "example.com/cart:1", Ports: []corev1.ContainerPort{{ContainerPort: 15006}}})
	if err == nil || !strings.Contains(err.Error(), `admission webhook "inject.weftmesh.io" denied the request`) || !strings.Contains(err.Error(), "port 15006 is the sidecar's inbound port") {
		t.Fatalf("a pod on the sidecar's port: %v", err)
	}

	// Without the control plane, a labelled namespace's pods are refused
	// (failurePolicy Fail), an unlabelled one's are not sent.
	closeCP()
	if _, err := create(on, "cp-down", nil); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Fatalf("a pod while the webhook is down: %v", err)
	}
	mustCreate(off, "cp-down", nil)
}

func toYAML(t *testing.T, v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
