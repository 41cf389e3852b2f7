package policy

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
)

// podTemplate is where a pod owner keeps the template its pods are made
// from, and what an UPDATE of that template does.
type podTemplate struct {
	// path is the template's field path, one member per element
	// (spec.jobTemplate.spec.template is four).
	path []string
	// updateAdds says an UPDATE may add pod template labels and scrape
	// annotations: changing the template replaces no running pod (a
	// CronJob's next Job gets them). Where an UPDATE of the template rolls
	// pods out (a Deployment) or is refused (a Job's template is
	// immutable), only CREATE adds to it.
	updateAdds bool
	// shape is the type the object is decoded into: the metadata, and the
	// template at path, read in one pass (see shapeType).
	shape reflect.Type
}

// newPodTemplate compiles a template path, dot-separated.
func newPodTemplate(path string, updateAdds bool) *podTemplate {
	t := &podTemplate{path: strings.Split(path, "."), updateAdds: updateAdds}
	t.shape = shapeType(t.path)
	return t
}

// String is the template's field path, as warnings name it.
func (t *podTemplate) String() string { return strings.Join(t.path, ".") }

// shapeType builds, for a template path, the struct type that holds the
// object's metadata and the template at that path, so that decoding reads
// both in one pass, as the built-in kinds' typed structs would; encoding/json
// caches a built type's decoder like any other. For spec.jobTemplate.spec.template
// it is
//
//	struct {
//	    Metadata *metadata `json:"metadata"`
//	    At *struct{ At *struct{ At *struct{ At *podTemplateShape `json:"template"` } `json:"spec"` } `json:"jobTemplate"` } `json:"spec"`
//	}
//
// A path member is one JSON object key; validTemplatePath keeps it to the
// characters a struct tag can carry.
func shapeType(path []string) reflect.Type {
	t := reflect.TypeFor[*podTemplateShape]()
	for i := len(path) - 1; i >= 0; i-- {
		field := reflect.StructField{Name: "At", Type: t, Tag: reflect.StructTag(`json:"` + path[i] + `"`)}
		if i == 0 {
			return reflect.StructOf([]reflect.StructField{
				{Name: "Metadata", Type: reflect.TypeFor[*metadata](), Tag: `json:"metadata"`},
				field,
			})
		}
		t = reflect.PointerTo(reflect.StructOf([]reflect.StructField{field}))
	}
	panic("policy: empty pod template path")
}

// decode reads raw's metadata and the template at the path. A template
// that cannot be read (the path leads to a string, or the template's
// members have the wrong types) is not an error: the object is decided on
// its metadata alone, and the returned problem says why its template was
// skipped.
func (t *podTemplate) decode(raw []byte, s *objectShape) (problem string, err error) {
	v := reflect.New(t.shape)
	if derr := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, v.Interface()); derr != nil {
		var meta struct {
			Metadata *metadata `json:"metadata"`
		}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &meta); err != nil {
			return "", err
		}
		s.Metadata = meta.Metadata
		return fmt.Sprintf("%s cannot be read as a pod template (%v)", t, derr), nil
	}
	s.Metadata = v.Elem().Field(0).Interface().(*metadata)
	// One pointer per path member, the last one to the template; a nil
	// one is a member the object does not have.
	at := v.Elem().Field(1)
	for range t.path[1:] {
		if at.IsNil() {
			return "", nil
		}
		at = at.Elem().Field(0)
	}
	s.template, _ = at.Interface().(*podTemplateShape)
	return "", nil
}

// The API group of the built-in batch kinds.
const groupBatch = "batch"

// templatePathRE is one member of a pod template path: a field name as
// API conventions write them (camelCase letters and digits).
var templatePathRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`)

// validTemplatePath refuses a path that cannot lead to a pod template:
// empty members, characters no field name has, or a path under the
// object's metadata or status, which no controller makes pods from.
func validTemplatePath(path string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if path == "" {
		return field.ErrorList{field.Required(fld, "the dot-separated path to the kind's pod template, such as spec.template")}
	}
	members := strings.Split(path, ".")
	for _, m := range members {
		if !templatePathRE.MatchString(m) {
			errs = append(errs, field.Invalid(fld, path, fmt.Sprintf("member %q is not a field name (letters and digits, dot-separated, such as spec.template)", m)))
		}
	}
	if slices.Contains([]string{"metadata", "status", "apiVersion", "kind"}, members[0]) {
		errs = append(errs, field.Invalid(fld, path, "a pod template lives under spec (or another member of the object), never under "+members[0]))
	}
	return errs
}

// compileKinds compiles the policy's declared kinds into mutation table
// entries, and names each as enroll rules' kinds refer to it: its kind, or
// kind.group when a built-in kind has the same name (Knative's
// serving.knative.dev Service is Service.serving.knative.dev).
func compileKinds(decls []KindDeclaration, errs field.ErrorList) (map[schema.GroupKind]mutator, []DeclaredKind, field.ErrorList) {
	table := map[schema.GroupKind]mutator{}
	var declared []DeclaredKind
	for i, d := range decls {
		fld := field.NewPath("kinds").Index(i)
		gv, err := schema.ParseGroupVersion(d.APIVersion)
		switch {
		case err != nil || !strings.Contains(d.APIVersion, "/") || gv.Version == "":
			errs = append(errs, field.Invalid(fld.Child("apiVersion"), d.APIVersion, "must be group/version, such as argoproj.io/v1alpha1"))
		case gv.Group == "":
			errs = append(errs, field.Invalid(fld.Child("apiVersion"), d.APIVersion, "the core group has no pod owner to declare: Services are built in"))
		case slices.Contains([]string{groupApps, groupBatch, groupMonitoring}, gv.Group):
			errs = append(errs, field.Invalid(fld.Child("apiVersion"), d.APIVersion, "the kinds of "+gv.Group+" are built in: name them in enroll rules' kinds"))
		}
		if !kindNameRE.MatchString(d.Kind) {
			errs = append(errs, field.Invalid(fld.Child("kind"), d.Kind, "must be a kind as the API server serves it, such as Rollout"))
		}
		if d.Resource == "" {
			errs = append(errs, field.Required(fld.Child("resource"), "the plural resource name the webhook configuration's rules and RBAC need, as kubectl api-resources prints it (rollouts)"))
		}
		for _, m := range validation.IsDNS1123Label(d.Resource) {
			errs = append(errs, field.Invalid(fld.Child("resource"), d.Resource, m))
		}
		perrs := validTemplatePath(d.PodTemplate, fld.Child("podTemplate"))
		errs = append(errs, perrs...)
		gk := schema.GroupKind{Group: gv.Group, Kind: d.Kind}
		if slices.ContainsFunc(declared, func(o DeclaredKind) bool { return o.GroupKind() == gk }) {
			errs = append(errs, field.Duplicate(fld, gk.String()))
		}
		name := d.Kind
		if _, builtin := builtinEnrollKinds()[d.Kind]; builtin {
			name = d.Kind + "." + gv.Group
		}
		// Every declaration is named, even one refused above, so that the
		// enroll rules naming it draw no second error.
		declared = append(declared, DeclaredKind{GroupVersionKind: gv.WithKind(d.Kind), Resource: d.Resource, Name: name})
		if len(perrs) > 0 || d.PodTemplate == "" {
			continue
		}
		rollsOut := d.TemplateUpdateRollsOut == nil || *d.TemplateUpdateRollsOut
		table[gk] = mutator{enrolled: true, kindName: name, template: newPodTemplate(d.PodTemplate, !rollsOut), decide: (*Policy).enrollObject}
	}
	return table, declared, errs
}

// kindNameRE is a kind as API conventions write it.
var kindNameRE = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

// DeclaredKind is a pod owner the policy declares: what the webhook
// configuration's rules, RBAC and audit's listing need of it.
type DeclaredKind struct {
	schema.GroupVersionKind
	// Resource is the plural resource name.
	Resource string
	// Name is how enroll rules' kinds name it.
	Name string
}

// DeclaredKinds lists the policy's declared kinds, in policy order.
func (p *Policy) DeclaredKinds() []DeclaredKind { return slices.Clone(p.declared) }

// builtinEnrollKinds are the names enroll rules give the built-in kinds
// they can name; the value says the kind owns pods.
func builtinEnrollKinds() map[string]bool {
	kinds := map[string]bool{}
	for gk, m := range mutations {
		if m.enrolled {
			kinds[gk.Kind] = m.template != nil
		}
	}
	return kinds
}
