package inject

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

func review(uid, op, resource, object string) string {
	return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + uid + `",` +
		`"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"` + resource + `"},` +
		`"namespace":"shop","operation":"` + op + `","object":` + object + `}}`
}

// post sends body to the webhook on a real loopback listener and decodes
// the AdmissionReview it answers.
func post(t *testing.T, url, body string) (int, *admissionv1.AdmissionResponse) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("the answer is not JSON: %v\n%s", err, b)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("the answer is not an AdmissionReview: %s", b)
	}
	return resp.StatusCode, out.Response
}

func TestWebhook(t *testing.T) {
	in := newInjector(t, Values{})
	srv := httptest.NewServer(in.Handler(nil))
	t.Cleanup(srv.Close)
	pod := `{"metadata":{"name":"p"},"spec":{"serviceAccountName":"cart","containers":[{"name":"app","image":"a"}]}}`
	// (A pod without serviceAccountName gets "default" too: TestPatchValuesAndAnnotations.)

	code, r := post(t, srv.URL, review("u1", "CREATE", "pods", pod))
	if code != 200 || r.UID != "u1" || !r.Allowed || r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("a pod: %d %+v", code, r)
	}
	var ops []Op
	if err := json.Unmarshal(r.Patch, &ops); err != nil || len(ops) != 2 || ops[0].Path != "/spec/initContainers" || ops[1].Path != "/spec/volumes" {
		t.Fatalf("the patch: %s %v", r.Patch, err)
	}
	for _, tc := range []struct{ name, body string }{
		{"an update", review("u2", "UPDATE", "pods", pod)},
		{"another resource", review("u3", "CREATE", "services", `{}`)},
		{"an opted-out pod", review("u4", "CREATE", "pods", `{"metadata":{"annotations":{"weftmesh.io/inject":"false"}},"spec":{"containers":[{"name":"app","image":"a"}]}}`)},
	} {
		code, r := post(t, srv.URL, tc.body)
		if code != 200 || !r.Allowed || r.Patch != nil {
			t.Errorf("%s: allowed unchanged? %d %+v", tc.name, code, r)
		}
	}
	// A pod the injector cannot take is refused with the reason.
	code, r = post(t, srv.URL, review("u5", "CREATE", "pods", `{"spec":{"containers":[{"name":"app","image":"a","ports":[{"containerPort":15006}]}]}}`))
	if code != 200 || r.UID != "u5" || r.Allowed || r.Result.Code != 422 || !strings.Contains(r.Result.Message, "port 15006 is the sidecar's inbound port") {
		t.Fatalf("a conflicting pod: %d %+v", code, r.Result)
	}
	code, r = post(t, srv.URL, review("u6", "CREATE", "pods", `{"spec":{"containers":"app"}}`))
	if code != 200 || r.UID != "u6" || r.Allowed || r.Result.Code != 400 || !strings.Contains(r.Result.Message, "decoding the pod") {
		t.Fatalf("an undecodable pod: %d %+v", code, r.Result)
	}

	// Requests that are not reviews get an AdmissionReview error, not a panic.
	for _, tc := range []struct{ name, body, want string }{
		{"not JSON", "{", "decoding the AdmissionReview"},
		{"v1beta1", strings.Replace(review("u", "CREATE", "pods", pod), "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1), "want admission.k8s.io/v1"},
		{"no request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, "no request"},
		{"no uid", review("", "CREATE", "pods", pod), "no uid"},
	} {
		code, r := post(t, srv.URL, tc.body)
		if code != 400 || r.Allowed || r.Result.Code != 400 || !strings.Contains(r.Result.Message, tc.want) {
			t.Errorf("%s: %d %+v", tc.name, code, r.Result)
		}
	}
	big := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":{"pad":"` + strings.Repeat("x", MaxReviewBytes) + `"}}}`
	code, r = post(t, srv.URL, big)
	if code != 413 || r.Allowed || !strings.Contains(r.Result.Message, "over 4194304 bytes") {
		t.Fatalf("an oversized body: %d %+v", code, r.Result)
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}
