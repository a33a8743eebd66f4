package inject

import (
	"encoding/json"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

func newInjector(t *testing.T, v Values) *Injector {
	t.Helper()
	if v.ControlURL == "" {
		v.ControlURL = "https://weft-control.weft-system.svc:7070"
	}
	if v.Audience == "" {
		v.Audience = "weft"
	}
	in, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// applyPatch applies the injector's patch to pod as the API server does
// (RFC 6902 on the pod's JSON) and decodes the result.
func applyPatch(t *testing.T, in *Injector, pod *corev1.Pod) (*corev1.Pod, string) {
	t.Helper()
	ops, skip, err := in.Patch(pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) == 0 {
		return pod, skip
	}
	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		t.Fatalf("decoding the patch %s: %v", raw, err)
	}
	doc, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("applying the patch %s: %v", raw, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got, skip
}

// podYAML decodes a pod written as a manifest.
func podYAML(t *testing.T, s string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := yaml.UnmarshalStrict([]byte(s), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

const appPod = `
metadata: {name: cart-1, namespace: shop, annotations: {weftmesh.io/node: cart-v2}}
spec:
  serviceAccountName: cart
  containers:
  - name: app
    image: example.com/cart:1
`

// The sidecar of deploy/kubernetes/example-workload.yaml, as the patch
// adds it: a native sidecar (first init container, restartPolicy Always).
const wantNative = `
metadata: {name: cart-1, namespace: shop, annotations: {weftmesh.io/node: cart-v2}}
spec:
  serviceAccountName: cart
  initContainers:
  - name: weft
    image: ghcr.io/weftmesh/weft:latest
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    args:
    - proxy
    - --control=https://weft-control.weft-system.svc:7070
    - --control-ca=/etc/weft/ca/ca.pem
    - --node=cart-v2
    - --join-token-file=/var/run/secrets/weft/token
    - --snapshot-cache=/var/cache/weft/snapshots
    - --wasm-cache=/var/cache/weft/wasm
    ports:
    - {name: weft-inbound, containerPort: 15006, protocol: TCP}
    resources:
      requests: {cpu: 10m, memory: 32Mi}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      runAsNonRoot: true
      runAsUser: 65532
      capabilities: {drop: [ALL]}
      seccompProfile: {type: RuntimeDefault}
    volumeMounts:
    - {name: weft-token, mountPath: /var/run/secrets/weft, readOnly: true}
    - {name: weft-ca, mountPath: /etc/weft/ca, readOnly: true}
    - {name: weft-cache, mountPath: /var/cache/weft}
  containers:
  - name: app
    image: example.com/cart:1
  volumes:
  - name: weft-token
    projected:
      sources:
      - serviceAccountToken: {audience: weft, expirationSeconds: 3600, path: token}
  - name: weft-ca
    configMap:
      name: weft-ca
      items: [{key: ca.pem, path: ca.pem}]
  - name: weft-cache
    emptyDir: {}
`

func TestPatchNativeSidecar(t *testing.T) {
	in := newInjector(t, Values{})
	got, skip := applyPatch(t, in, podYAML(t, appPod))
	want := podYAML(t, wantNative)
	if skip != "" || !equality.Semantic.DeepEqual(got, want) {
		t.Fatalf("skip %q; got\n%s\nwant\n%s", skip, toYAML(t, got), toYAML(t, want))
	}
	// Injecting the result again changes nothing: it has a weft container.
	ops, skip, err := in.Patch(got)
	if len(ops) != 0 || err != nil || !strings.Contains(skip, "already has a weft container") {
		t.Fatalf("a second injection: %v %q %v", ops, skip, err)
	}
}

// With init containers and volumes of its own, the pod keeps them: the
// sidecar goes first, the volumes after the pod's.
func TestPatchKeepsThePodsOwn(t *testing.T) {
	in := newInjector(t, Values{})
	pod := podYAML(t, `
metadata: {name: p, namespace: shop}
spec:
  serviceAccountName: reviews
  initContainers: [{name: migrate, image: example.com/migrate:1}]
  containers: [{name: app, image: example.com/reviews:1, ports: [{name: http, containerPort: 8080}]}]
  volumes: [{name: data, emptyDir: {}}]
`)
	got, _ := applyPatch(t, in, pod)
	var names []string
	for _, c := range got.Spec.InitContainers {
		names = append(names, c.Name)
	}
	for _, v := range got.Spec.Volumes {
		names = append(names, v.Name)
	}
	if strings.Join(names, ",") != "weft,migrate,data,weft-token,weft-ca,weft-cache" {
		t.Fatalf("init containers and volumes: %v", names)
	}
	if got.Spec.InitContainers[0].Args[3] != "--node=reviews" {
		t.Fatalf("the node id defaults to the service account: %v", got.Spec.InitContainers[0].Args)
	}
	if !equality.Semantic.DeepEqual(got.Spec.Containers, pod.Spec.Containers) || !equality.Semantic.DeepEqual(got.Spec.InitContainers[1], pod.Spec.InitContainers[0]) {
		t.Fatal("the pod's own containers changed")
	}
}

// native_sidecar: false appends a regular container; the values and the
// annotations choose image, port, node and resources.
func TestPatchValuesAndAnnotations(t *testing.T) {
	no := false
	in := newInjector(t, Values{NativeSidecar: &no, Image: "example.com/weft:2", ImagePullPolicy: "Always", CAConfigMap: "mesh-ca",
		InboundPort: 16006, TokenExpirationSeconds: 7200, RunAsUser: 1000, MemoryLimit: "256Mi", Audience: "mesh", ControlURL: "https://a:7070,https://b:7070"})
	pod := podYAML(t, `
metadata:
  name: p
  annotations: {weftmesh.io/image: "example.com/weft:canary", weftmesh.io/inbound-port: "17006", weftmesh.io/inject: "true"}
spec:
  containers: [{name: app, image: example.com/app:1}]
`)
	got, _ := applyPatch(t, in, pod)
	if got.Spec.ServiceAccountName != "default" {
		t.Fatalf("a pod without a service account gets the default one (the projected token needs one): %q", got.Spec.ServiceAccountName)
	}
	if len(got.Spec.InitContainers) != 0 || len(got.Spec.Containers) != 2 || got.Spec.Containers[0].Name != "app" {
		t.Fatalf("containers: %+v", got.Spec.Containers)
	}
	c := got.Spec.Containers[1]
	want := corev1.Container{Name: "weft", Image: "example.com/weft:canary", ImagePullPolicy: corev1.PullAlways,
		Args: []string{"proxy", "--control=https://a:7070,https://b:7070", "--control-ca=/etc/weft/ca/ca.pem", "--node=default",
			"--join-token-file=/var/run/secrets/weft/token", "--snapshot-cache=/var/cache/weft/snapshots", "--wasm-cache=/var/cache/weft/wasm"},
		Ports: []corev1.ContainerPort{{Name: "weft-inbound", ContainerPort: 17006, Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}},
		SecurityContext: c.SecurityContext, VolumeMounts: c.VolumeMounts}
	if !equality.Semantic.DeepEqual(c, want) || *c.SecurityContext.RunAsUser != 1000 {
		t.Fatalf("got\n%s\nwant\n%s", toYAML(t, c), toYAML(t, want))
	}
	tok := got.Spec.Volumes[0].Projected.Sources[0].ServiceAccountToken
	if tok.Audience != "mesh" || *tok.ExpirationSeconds != 7200 || got.Spec.Volumes[1].ConfigMap.Name != "mesh-ca" {
		t.Fatalf("volumes: %s", toYAML(t, got.Spec.Volumes))
	}
}

func TestPatchSkips(t *testing.T) {
	in := newInjector(t, Values{})
	for _, tc := range []struct{ name, pod, why string }{
		{"opted out", `{metadata: {annotations: {weftmesh.io/inject: "false"}}, spec: {containers: [{name: app, image: a}]}}`, "weftmesh.io/inject: false"},
		{"opted out (disabled)", `{metadata: {annotations: {weftmesh.io/inject: disabled}}, spec: {containers: [{name: app, image: a}]}}`, "weftmesh.io/inject: disabled"},
		{"a hand-written sidecar", `{spec: {containers: [{name: app, image: a}, {name: weft, image: b}]}}`, "already has a weft container"},
		{"a hand-written native sidecar", `{spec: {initContainers: [{name: weft, image: b}], containers: [{name: app, image: a}]}}`, "already has a weft container"},
		{"host network", `{spec: {hostNetwork: true, containers: [{name: app, image: a}]}}`, "host's network"},
	} {
		ops, skip, err := in.Patch(podYAML(t, tc.pod))
		if len(ops) != 0 || err != nil || !strings.Contains(skip, tc.why) {
			t.Errorf("%s: %v %q %v", tc.name, ops, skip, err)
		}
	}
}

func TestPatchRefuses(t *testing.T) {
	in := newInjector(t, Values{})
	for _, tc := range []struct{ name, pod, want string }{
		{"a typo in the opt-out", `{metadata: {annotations: {weftmesh.io/inject: "flase"}}, spec: {containers: [{name: app, image: a}]}}`, `weftmesh.io/inject: "flase"`},
		{"a bad node id", `{metadata: {annotations: {weftmesh.io/node: "a b"}}, spec: {containers: [{name: app, image: a}]}}`, `node id "a b"`},
		{"a bad image", `{metadata: {annotations: {weftmesh.io/image: ""}}, spec: {containers: [{name: app, image: a}]}}`, "weftmesh.io/image: empty"},
		{"a bad port", `{metadata: {annotations: {weftmesh.io/inbound-port: "0x10"}}, spec: {containers: [{name: app, image: a}]}}`, `weftmesh.io/inbound-port: "0x10"`},
		{"a port taken", `{spec: {containers: [{name: app, image: a, ports: [{containerPort: 15006}]}]}}`, `container "app": port 15006`},
		{"a port name taken", `{spec: {containers: [{name: app, image: a, ports: [{name: weft-inbound, containerPort: 80}]}]}}`, `port name "weft-inbound"`},
		{"a volume name taken", `{spec: {containers: [{name: app, image: a}], volumes: [{name: weft-ca, emptyDir: {}}]}}`, `volume "weft-ca"`},
	} {
		ops, _, err := in.Patch(podYAML(t, tc.pod))
		if len(ops) != 0 || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v %v, want an error containing %q", tc.name, ops, err, tc.want)
		}
	}
	// A UDP port 15006 is no conflict.
	if _, _, err := in.Patch(podYAML(t, `{spec: {containers: [{name: app, image: a, ports: [{containerPort: 15006, protocol: UDP}]}]}}`)); err != nil {
		t.Errorf("a UDP port: %v", err)
	}
}

func toYAML(t *testing.T, v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
