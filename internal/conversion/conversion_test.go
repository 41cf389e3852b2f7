package conversion

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	apix "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/testdiff"
)

// convert sends one ConversionReview, as the API server does.
func convert(t *testing.T, h http.Handler, desired string, objs ...[]byte) *apix.ConversionResponse {
	t.Helper()
	review := apix.ConversionReview{TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "ConversionReview"},
		Request: &apix.ConversionRequest{UID: "u1", DesiredAPIVersion: desired}}
	for _, o := range objs {
		review.Request.Objects = append(review.Request.Objects, runtime.RawExtension{Raw: o})
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body)))
	var out apix.ConversionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("HTTP %d %q: %v", rec.Code, rec.Body.String(), err)
	}
	if out.Response.UID != "u1" {
		t.Errorf("response UID %q, want the request's", out.Response.UID)
	}
	return out.Response
}

// TestAlertmanagerConfigRoundTrips: a team's v1beta1 AlertmanagerConfig
// is converted to the stored v1alpha1 (timeIntervals become
// muteTimeIntervals, a Secret URL keeps its reference) and back to what it
// was, as a list request converts several objects at once.
func TestAlertmanagerConfigRoundTrips(t *testing.T) {
	h, err := Handler()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../policy/testdata/alertmanagerconfigs/v1beta1-team-routing.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	beta, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	resp := convert(t, h, "monitoring.coreos.com/v1alpha1", beta, beta)
	if resp.Result.Status != metav1.StatusSuccess || len(resp.ConvertedObjects) != 2 {
		t.Fatalf("result %+v with %d objects, want Success with 2", resp.Result, len(resp.ConvertedObjects))
	}
	var alpha struct {
		APIVersion string `json:"apiVersion"`
		Spec       struct {
			MuteTimeIntervals []struct{ Name string } `json:"muteTimeIntervals"`
			Receivers         []struct {
				Name         string
				SlackConfigs []struct {
					APIURL struct{ Name, Key string } `json:"apiURL"`
				} `json:"slackConfigs"`
			}
		}
	}
	if err := json.Unmarshal(resp.ConvertedObjects[0].Raw, &alpha); err != nil {
		t.Fatal(err)
	}
	if alpha.APIVersion != "monitoring.coreos.com/v1alpha1" || len(alpha.Spec.MuteTimeIntervals) != 1 || alpha.Spec.MuteTimeIntervals[0].Name != "business-hours" ||
		alpha.Spec.Receivers[0].SlackConfigs[0].APIURL.Name != "slack" || alpha.Spec.Receivers[0].SlackConfigs[0].APIURL.Key != "url" {
		t.Errorf("v1alpha1 conversion: %s", resp.ConvertedObjects[0].Raw)
	}
	back := convert(t, h, "monitoring.coreos.com/v1beta1", resp.ConvertedObjects[0].Raw)
	if back.Result.Status != metav1.StatusSuccess || len(back.ConvertedObjects) != 1 {
		t.Fatalf("back: %+v", back.Result)
	}
	var want, got map[string]any
	if err := json.Unmarshal(beta, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(back.ConvertedObjects[0].Raw, &got); err != nil {
		t.Fatal(err)
	}
	// Conversion fills metadata.creationTimestamp with null: compare specs.
	if d := testdiff.Diff(want["spec"], got["spec"]); d != "" {
		t.Errorf("the round trip changed the spec (-want +got):\n%s", d)
	}
}

func TestAnUnknownVersionIsAFailureNotACrash(t *testing.T) {
	h, err := Handler()
	if err != nil {
		t.Fatal(err)
	}
	resp := convert(t, h, "monitoring.coreos.com/v9", []byte(`{"apiVersion":"monitoring.coreos.com/v1alpha1","kind":"AlertmanagerConfig","metadata":{"name":"x"}}`))
	if resp.Result.Status != metav1.StatusFailure || resp.Result.Message == "" {
		t.Errorf("result %+v, want a failure that says why", resp.Result)
	}
}
