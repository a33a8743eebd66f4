package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"go.uber.org/zap"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kjson "k8s.io/apimachinery/pkg/util/json"
)

// MaxReviewBytes bounds an AdmissionReview request body: the API server
// keeps objects under 3 MiB (etcd's request limit is 1.5 MiB by default),
// so a bigger body is not a pod review.
const MaxReviewBytes = 4 << 20

// Handler serves the webhook: POST an AdmissionReview v1, get one back.
// Pods being created get the sidecar patch; any other request is allowed
// unchanged. log (nil: none) gets one debug line per review and every
// refusal at info.
func (in *Injector) Handler(log *zap.Logger) http.Handler {
	if log == nil {
		log = zap.NewNop()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST an AdmissionReview (admission.k8s.io/v1)", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReviewBytes))
		if err != nil {
			status := http.StatusBadRequest
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				status = http.StatusRequestEntityTooLarge
				err = fmt.Errorf("request body over %d bytes", MaxReviewBytes)
			}
			log.Info("inject: unreadable admission review", zap.Error(err))
			writeReview(w, status, refuse("", status, "weft injector: "+err.Error()))
			return
		}
		review, err := DecodeReview(body)
		if err != nil {
			log.Info("inject: undecodable admission review", zap.Error(err))
			writeReview(w, http.StatusBadRequest, refuse("", http.StatusBadRequest, "weft injector: "+err.Error()))
			return
		}
		resp := in.Review(review.Request)
		req := review.Request
		fields := []zap.Field{zap.String("uid", string(req.UID)), zap.String("namespace", req.Namespace), zap.String("name", req.Name), zap.Bool("allowed", resp.Allowed), zap.Bool("patched", resp.Patch != nil)}
		if !resp.Allowed {
			log.Info("inject: pod refused", append(fields, zap.String("reason", resp.Result.Message))...)
		} else {
			log.Debug("inject: reviewed", fields...)
		}
		writeReview(w, http.StatusOK, resp)
	})
}

// DecodeReview reads an AdmissionReview v1 request: the kind and version,
// a request with a uid.
func DecodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	if err := kjson.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("decoding the AdmissionReview: %w", err)
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("apiVersion %q kind %q: want admission.k8s.io/v1 AdmissionReview (admissionReviewVersions: [v1])", review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return nil, errors.New("the AdmissionReview has no request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("the AdmissionReview's request has no uid")
	}
	return &review, nil
}

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

// Review answers one admission request: a Pod CREATE gets the sidecar
// patch (or a refusal naming what is wrong with the pod); anything else is
// allowed as it is.
func (in *Injector) Review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Resource != podResource || req.SubResource != "" || req.Operation != admissionv1.Create {
		return allow
	}
	// The patch's paths are relative to the object as sent, so it is read
	// as the API server reads it (keys are case-sensitive: encoding/json
	// would take "Volumes" for "volumes"), and must have a spec to add to.
	var pod corev1.Pod
	if err := kjson.Unmarshal(req.Object.Raw, &pod); err != nil {
		return refuse(req.UID, http.StatusBadRequest, "weft injector: decoding the pod: "+err.Error())
	}
	var shape struct {
		Spec map[string]json.RawMessage `json:"spec"`
	}
	if err := kjson.Unmarshal(req.Object.Raw, &shape); err != nil || shape.Spec == nil {
		return refuse(req.UID, http.StatusBadRequest, "weft injector: the request's object is not a pod with a spec")
	}
	ops, _, err := in.Patch(&pod)
	if err != nil {
		return refuse(req.UID, http.StatusUnprocessableEntity, joinErrors(err))
	}
	if len(ops) == 0 {
		return allow
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return refuse(req.UID, http.StatusInternalServerError, "weft injector: encoding the patch: "+err.Error())
	}
	pt := admissionv1.PatchTypeJSONPatch
	allow.Patch, allow.PatchType = patch, &pt
	return allow
}

// refuse denies with an HTTP-like code and a message kubectl shows the
// pod's creator.
func refuse(uid types.UID, code int, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{UID: uid, Allowed: false,
		Result: &metav1.Status{Status: metav1.StatusFailure, Code: int32(code), Message: msg}}
}

func writeReview(w http.ResponseWriter, status int, resp *admissionv1.AdmissionResponse) {
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(&out)
}
