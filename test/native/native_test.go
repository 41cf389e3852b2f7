// Package native checks the MutatingAdmissionPolicies `promenroll compile`
// generates with the API server's own admission policy code
// (k8s.io/apiserver's CEL compiler, environment and JSON patcher), in
// process: every generated expression compiles as the API server compiles
// it, and the policies, evaluated as the API server evaluates them, store
// the same labels and annotations as the webhook engine, for policies and
// objects a fuzzer writes.
package native

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating/patch"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/promenroll/promenroll/policy"
)

// compiled is one MutatingAdmissionPolicy compiled as the API server's
// mutating admission plugin compiles it (mutating.compilePolicy at
// k8s.io/apiserver v0.37.2).
type compiled struct {
	mp       *admissionregistrationv1.MutatingAdmissionPolicy
	compiler *plugincel.CompositedCompiler
	patchers []patch.Patcher
}

// compile compiles mp's variables and mutations in both of the API
// server's environments: NewExpressions, the stricter one a create or
// update of the policy is checked in, and StoredExpressions, the one
// admission evaluates in. Any error is returned, naming the expression.
func compile(mp *admissionregistrationv1.MutatingAdmissionPolicy) (*compiled, error) {
	opts := plugincel.OptionalVariableDeclarations{HasParams: mp.Spec.ParamKind != nil, HasAuthorizer: true}
	popts := opts
	popts.HasPatchTypes = true
	var errs []error
	var out *compiled
	for _, mode := range []environment.Type{environment.NewExpressions, environment.StoredExpressions} {
		compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
		if err != nil {
			return nil, err
		}
		for _, v := range mp.Spec.Variables {
			if r := compiler.CompileAndStoreVariable(&validating.Variable{Name: v.Name, Expression: v.Expression}, opts, mode); r.Error != nil {
				errs = append(errs, fmt.Errorf("%s: variable %s (%s environment): %w", mp.Name, v.Name, modeName(mode), r.Error))
			}
		}
		c := &compiled{mp: mp, compiler: compiler}
		for i, m := range mp.Spec.Mutations {
			if m.PatchType != admissionregistrationv1.PatchTypeJSONPatch || m.JSONPatch == nil {
				errs = append(errs, fmt.Errorf("%s: mutation %d is not a JSON patch", mp.Name, i))
				continue
			}
			ev := compiler.CompileMutatingEvaluator(&patch.JSONPatchCondition{Expression: m.JSONPatch.Expression}, popts, mode)
			for _, err := range ev.CompilationErrors() {
				errs = append(errs, fmt.Errorf("%s: mutation %d (%s environment): %w", mp.Name, i, modeName(mode), err))
			}
			c.patchers = append(c.patchers, patch.NewJSONPatcher(ev))
		}
		out = c
	}
	return out, errors.Join(errs...)
}

func modeName(m environment.Type) string {
	if m == environment.NewExpressions {
		return "new"
	}
	return "stored"
}

// warner is one ValidatingAdmissionPolicy compiled as the API server's
// validating admission plugin compiles it (validating.compilePolicy).
type warner struct {
	vap       *admissionregistrationv1.ValidatingAdmissionPolicy
	compiler  *plugincel.CompositedCompiler
	validator validating.Validator
}

// compileWarner compiles vap's variables, validations and message
// expressions; any compile error is returned, naming the expression.
func compileWarner(vap *admissionregistrationv1.ValidatingAdmissionPolicy) (*warner, error) {
	opts := plugincel.OptionalVariableDeclarations{HasAuthorizer: true}
	msgOpts := plugincel.OptionalVariableDeclarations{}
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, v := range vap.Spec.Variables {
		if r := compiler.CompileAndStoreVariable(&validating.Variable{Name: v.Name, Expression: v.Expression}, opts, environment.StoredExpressions); r.Error != nil {
			errs = append(errs, fmt.Errorf("%s: variable %s: %w", vap.Name, v.Name, r.Error))
		}
	}
	var conds, msgs []plugincel.ExpressionAccessor
	for _, v := range vap.Spec.Validations {
		conds = append(conds, &validating.ValidationCondition{Expression: v.Expression, Message: v.Message})
		msgs = append(msgs, &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression})
	}
	vf := compiler.CompileCondition(conds, opts, environment.StoredExpressions)
	mf := compiler.CompileCondition(msgs, msgOpts, environment.StoredExpressions)
	for _, err := range append(vf.CompilationErrors(), mf.CompilationErrors()...) {
		errs = append(errs, fmt.Errorf("%s: %w", vap.Name, err))
	}
	v := validating.NewValidator(vf, nil, compiler.CompileCondition(nil, opts, environment.StoredExpressions), mf, vap.Spec.FailurePolicy, nil)
	return &warner{vap: vap, compiler: compiler, validator: v}, errors.Join(errs...)
}

// engine is a policy's native objects compiled.
type engine struct {
	mutating []*compiled
	warners  []*warner
}

// compileAll compiles every policy of p's native objects.
func compileAll(p *policy.Policy) (*engine, error) {
	objs, err := p.NativePolicies(policy.NativeOptions{})
	if err != nil {
		return nil, err
	}
	e := &engine{}
	var errs []error
	for _, o := range objs {
		switch o := o.(type) {
		case *admissionregistrationv1.MutatingAdmissionPolicy:
			c, err := compile(o)
			errs = append(errs, err)
			e.mutating = append(e.mutating, c)
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			w, err := compileWarner(o)
			errs = append(errs, err)
			e.warners = append(e.warners, w)
		}
	}
	return e, errors.Join(errs...)
}

// request is one admission the two engines decide.
type request struct {
	op        policy.Operation
	gvk       schema.GroupVersionKind
	resource  string
	object    map[string]any
	oldObject map[string]any
	namespace *corev1.Namespace
}

// matches is the policy's match constraints as the API server's dispatcher
// applies them: the resource rules, then the namespace and object
// selectors (on UPDATE the object selector matches if either the object
// or the stored one does).
func matches(mc *admissionregistrationv1.MatchResources, r request) (bool, error) {
	ruleMatch := false
	for _, rule := range mc.ResourceRules {
		if slices.Contains(rule.APIGroups, r.gvk.Group) && slices.Contains(rule.APIVersions, r.gvk.Version) && slices.Contains(rule.Resources, r.resource) &&
			slices.Contains(rule.Operations, admissionregistrationv1.OperationType(r.op)) {
			ruleMatch = true
		}
	}
	if !ruleMatch {
		return false, nil
	}
	nsSel, err := metav1.LabelSelectorAsSelector(mc.NamespaceSelector)
	if err != nil {
		return false, err
	}
	if !nsSel.Matches(labelSet(r.namespace.Labels)) {
		return false, nil
	}
	objSel, err := metav1.LabelSelectorAsSelector(mc.ObjectSelector)
	if err != nil {
		return false, err
	}
	return objSel.Matches(labelSet(labelsOf(r.object))) || r.oldObject != nil && objSel.Matches(labelSet(labelsOf(r.oldObject))), nil
}

type labelSet map[string]string

func (s labelSet) Has(k string) bool   { _, ok := s[k]; return ok }
func (s labelSet) Get(k string) string { return s[k] }
func (s labelSet) Lookup(k string) (string, bool) {
	v, ok := s[k]
	return v, ok
}

func labelsOf(obj map[string]any) map[string]string {
	out := map[string]string{}
	m, _, _ := unstructured.NestedStringMap(obj, "metadata", "labels")
	maps.Copy(out, m)
	return out
}

// apply runs the policy's mutations on r.object in order, as the API
// server does, each seeing the object as the ones before left it.
func (c *compiled) apply(r request) (map[string]any, error) {
	gvr := r.gvk.GroupVersion().WithResource(r.resource)
	ctx := c.compiler.CreateContext(context.Background())
	cur := r.object
	for _, p := range c.patchers {
		next, err := p.Patch(ctx, patch.Request{
			MatchedResource:     gvr,
			VersionedAttributes: attributes(r, cur),
			ObjectInterfaces:    admission.NewObjectInterfacesFromScheme(runtime.NewScheme()),
			OptionalVariables:   plugincel.OptionalVariableBindings{},
			Namespace:           r.namespace,
		}, celconfig.RuntimeCELCostBudget)
		if err != nil {
			return nil, err
		}
		cur = next.(*unstructured.Unstructured).Object
	}
	return cur, nil
}

// native is the object the API server stores with p's native policies,
// and the warnings it gives (the message of each failed validation of a
// Warn binding; the API server puts the policy's and binding's names
// before it).
func native(e *engine, r request) (map[string]any, []string, error) {
	obj := r.object
	for _, c := range e.mutating {
		ok, err := matches(c.mp.Spec.MatchConstraints, r)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		r.object = obj
		if obj, err = c.apply(r); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", c.mp.Name, err)
		}
	}
	r.object = obj
	var warnings []string
	for _, w := range e.warners {
		ok, err := matches(w.vap.Spec.MatchConstraints, r)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		res := w.validator.Validate(w.compiler.CreateContext(context.Background()), r.gvk.GroupVersion().WithResource(r.resource), attributes(r, obj), nil, r.namespace, celconfig.RuntimeCELCostBudget, nil)
		for _, d := range res.Decisions {
			switch {
			case d.Evaluation == validating.EvalError:
				return nil, nil, fmt.Errorf("%s: a validation failed to evaluate: %s", w.vap.Name, d.Message)
			case d.Action == validating.ActionDeny:
				warnings = append(warnings, d.Message)
			}
		}
	}
	return obj, warnings, nil
}

// attributes are r's admission attributes with obj as the object.
func attributes(r request, obj map[string]any) *admission.VersionedAttributes {
	cur := &unstructured.Unstructured{Object: obj}
	var old runtime.Object
	if r.oldObject != nil {
		old = &unstructured.Unstructured{Object: r.oldObject}
	}
	gvr := r.gvk.GroupVersion().WithResource(r.resource)
	attrs := admission.NewAttributesRecord(cur, old, r.gvk, r.namespace.Name, cur.GetName(), gvr, "", admission.Operation(r.op), nil, false, &user.DefaultInfo{Name: "fuzz"})
	return &admission.VersionedAttributes{Attributes: attrs, VersionedKind: r.gvk, VersionedObject: admission.NewLazyObject(cur), VersionedOldObject: admission.NewLazyObject(old)}
}

// webhook is the object the API server stores with the webhook engine,
// and its warnings.
func webhook(p *policy.Policy, r request) (map[string]any, []string, error) {
	raw, err := json.Marshal(r.object)
	if err != nil {
		return nil, nil, err
	}
	var oldRaw []byte
	if r.oldObject != nil {
		if oldRaw, err = json.Marshal(r.oldObject); err != nil {
			return nil, nil, err
		}
	}
	m, err := p.Mutate(r.gvk.GroupKind(), policy.MutationRequest{Operation: r.op, Object: raw, OldObject: oldRaw,
		Namespace: policy.Namespace{Name: r.namespace.Name, Labels: r.namespace.Labels, Annotations: r.namespace.Annotations}})
	if err != nil {
		return nil, nil, err
	}
	stored, _, err := m.Apply(raw)
	if err != nil {
		return nil, nil, err
	}
	var out map[string]any
	return out, m.Warnings(), json.Unmarshal(stored, &out)
}
