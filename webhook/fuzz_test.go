package webhook

import (
	"context"
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/promenroll/promenroll/policy"
)

// FuzzMutate sends arbitrary objects (and old objects) of every handled
// kind to /mutate and /validate: no input may panic, and any patch must be
// valid JSON Patch that applies to the object it was computed for.
func FuzzMutate(f *testing.F) {
	f.Add(uint8(0), []byte(deploymentJSON), []byte(deploymentJSON))
	f.Add(uint8(1), []byte(`{"metadata":{"labels":null},"spec":{"template":{"metadata":null}}}`), []byte(nil))
	f.Add(uint8(2), []byte(ruleJSON(goodAlert)), []byte(nil))
	f.Add(uint8(2), []byte(ruleJSON(`{"alert":"A","expr":"up","labels":{"severity":1,"x":[1]}}`)), []byte(nil))
	f.Add(uint8(3), []byte(`{"metadata":{"name":"m","labels":{"release":"x"}}}`), []byte(`null`))
	p, err := policy.Parse("policy.yaml", []byte(testPolicy), policy.Options{})
	if err != nil {
		f.Fatal(err)
	}
	store := StaticPolicyStore(p)
	m := &Mutator{Policies: store, Namespaces: testNamespaces, Metrics: NewMetrics(nil)}
	v := &Validator{Policies: store, Namespaces: testNamespaces, Metrics: NewMetrics(nil)}
	gvks := []struct{ group, version, kind string }{
		{"apps", "v1", "Deployment"}, {"", "v1", "Service"},
		{"monitoring.coreos.com", "v1", "PrometheusRule"}, {"monitoring.coreos.com", "v1", "ServiceMonitor"},
	}
	f.Fuzz(func(t *testing.T, kind uint8, obj, old []byte) {
		g := gvks[int(kind)%len(gvks)]
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: types.UID("fuzz"), Operation: admissionv1.Create, Namespace: "shop",
			Object: runtime.RawExtension{Raw: obj},
		}}
		req.Kind.Group, req.Kind.Version, req.Kind.Kind = g.group, g.version, g.kind
		if old != nil {
			req.Operation = admissionv1.Update
			req.OldObject = runtime.RawExtension{Raw: old}
		}
		resp := m.Handle(context.Background(), req)
		if err := resp.Complete(req); err != nil {
			t.Fatal(err)
		}
		if len(resp.Patch) > 0 {
			var ops []map[string]any
			if err := json.Unmarshal(resp.Patch, &ops); err != nil {
				t.Fatalf("patch is not JSON: %s", resp.Patch)
			}
			if _, err := applyJSONPatch(obj, resp.Patch); err != nil {
				t.Fatalf("patch %s does not apply to %s: %v", resp.Patch, obj, err)
			}
		}
		v.Handle(context.Background(), req)
	})
}
