package inject

import (
	kjson "k8s.io/apimachinery/pkg/util/json"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
)

// FuzzDecodeReview: any body is decoded or refused without a panic; a
// decoded review gets an answer for its uid, and a patch in it applies to
// the request's pod and leaves it with exactly one weft container.
func FuzzDecodeReview(f *testing.F) {
	pod := `{"metadata":{"name":"p","annotations":{"weftmesh.io/node":"n"}},"spec":{"containers":[{"name":"app","image":"a"}],"volumes":[{"name":"v","emptyDir":{}}]}}`
	f.Add([]byte(review("u", "CREATE", "pods", pod)))
	f.Add([]byte(review("u", "CREATE", "pods", `{"spec":{"initContainers":[{"name":"i"}],"containers":null}}`)))
	f.Add([]byte(review("u", "CREATE", "pods", `{"metadata":{"annotations":{"weftmesh.io/inbound-port":"99999"}}}`)))
	f.Add([]byte(review("u", "DELETE", "pods", `null`)))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","resource":{"version":"v1","resource":"pods"},"operation":"CREATE"}}`))
	f.Add([]byte(`{"request":null}`))
	f.Add([]byte(`[]`))
	in, err := New(Values{ControlURL: "https://c:7070", Audience: "weft"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		review, err := DecodeReview(body)
		if err != nil {
			return
		}
		resp := in.Review(review.Request)
		if resp == nil || resp.UID != review.Request.UID {
			t.Fatalf("no answer for uid %q: %+v", review.Request.UID, resp)
		}
		if !resp.Allowed && (resp.Result == nil || resp.Result.Message == "") {
			t.Fatalf("a refusal without a reason: %+v", resp)
		}
		if resp.Patch == nil {
			return
		}
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("the patch: %v", err)
		}
		out, err := p.Apply(review.Request.Object.Raw)
		if err != nil {
			t.Fatalf("the patch does not apply to the pod: %v\npod %s\npatch %s", err, review.Request.Object.Raw, resp.Patch)
		}
		var got corev1.Pod
		if err := kjson.Unmarshal(out, &got); err != nil { // as the API server reads it
			t.Fatalf("the patched pod: %v", err)
		}
		n := 0
		for _, c := range allContainers(&got) {
			if c.Name == ContainerName {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d weft containers after the patch: %s", n, out)
		}
	})
}
