package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/promenroll/promenroll/internal/policystore"
	"github.com/promenroll/promenroll/policy"
)

// FuzzMutate sends arbitrary objects (and old objects) of every kind of the
// mutation table to /mutate and /validate: no input may panic, any patch
// must be valid JSON Patch that applies to the object it was computed for,
// and check's and audit's in-process path (policy.Mutate, then the patch
// applied by Mutation.Apply) must give the same decision: the same patch
// bytes, the same warnings, the same stored object.
func FuzzMutate(f *testing.F) {
	f.Add(uint8(0), []byte(deploymentJSON), []byte(deploymentJSON))
	f.Add(uint8(1), []byte(`{"metadata":{"labels":null},"spec":{"template":{"metadata":null}}}`), []byte(nil))
	f.Add(uint8(2), []byte(ruleJSON(goodAlert)), []byte(nil))
	f.Add(uint8(2), []byte(ruleJSON(`{"alert":"A","expr":"up","labels":{"severity":1,"x":[1]}}`)), []byte(nil))
	f.Add(uint8(3), []byte(`{"metadata":{"name":"m","labels":{"release":"x"}}}`), []byte(`null`))
	f.Add(uint8(4), []byte(`{"metadata":{"name":"w","labels":{"app.kubernetes.io/name":"w"},"annotations":{"prometheus.io/port":"9o9o"}},"spec":{"ports":[{"name":"","port":80},{"name":"","port":81}]}}`), []byte(nil))
	p, err := policy.Parse("policy.yaml", []byte(testPolicy), policy.Options{})
	if err != nil {
		f.Fatal(err)
	}
	store := policystore.Static(p)
	m := &Mutator{Policies: store, Namespaces: testNamespaces, Metrics: NewMetrics(nil)}
	v := &Validator{Policies: store, Namespaces: testNamespaces, Metrics: NewMetrics(nil)}
	kinds := p.MutatedKinds()
	f.Fuzz(func(t *testing.T, kind uint8, obj, old []byte) {
		gk := kinds[int(kind)%len(kinds)]
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: types.UID("fuzz"), Operation: admissionv1.Create, Namespace: "shop",
			Object: runtime.RawExtension{Raw: obj},
		}}
		req.Kind.Group, req.Kind.Version, req.Kind.Kind = gk.Group, "v1", gk.Kind
		if old != nil {
			req.Operation = admissionv1.Update
			req.OldObject = runtime.RawExtension{Raw: old}
		}
		resp := m.Handle(context.Background(), req)
		if err := resp.Complete(req); err != nil {
			t.Fatal(err)
		}
		var stored []byte
		if len(resp.Patch) > 0 {
			var ops []map[string]any
			if err := json.Unmarshal(resp.Patch, &ops); err != nil {
				t.Fatalf("patch is not JSON: %s", resp.Patch)
			}
			if stored, err = applyJSONPatch(obj, resp.Patch); err != nil {
				t.Fatalf("patch %s does not apply to %s: %v", resp.Patch, obj, err)
			}
		}
		ns, _ := testNamespaces.Namespace(context.Background(), "shop")
		mu, err := p.Mutate(gk, policy.MutationRequest{Operation: policy.Operation(req.Operation), Object: obj, OldObject: old, Namespace: ns})
		if (err != nil) != (resp.Result != nil && resp.Result.Code == http.StatusBadRequest) {
			t.Fatalf("policy.Mutate err = %v, /mutate answered %v", err, resp.Result)
		}
		if err == nil {
			if w := policy.LimitWarnings(mu.Warnings()); !slices.Equal(w, resp.Warnings) {
				t.Fatalf("in-process warnings %q, /mutate %q", w, resp.Warnings)
			}
			got, patch, err := mu.Apply(obj)
			switch {
			case err != nil && stored != nil:
				t.Fatalf("Mutation.Apply: %v, /mutate's patch applied", err)
			case err == nil && !bytes.Equal(patch, resp.Patch):
				t.Fatalf("in-process patch %s, /mutate %s", patch, resp.Patch)
			case stored != nil && !jsonEqual(got, stored):
				t.Fatalf("Mutation.Apply gives %s, /mutate's patch %s", got, stored)
			}
		}
		v.Handle(context.Background(), req)
	})
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
