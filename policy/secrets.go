package policy

import (
	"fmt"
	"reflect"
	"strings"

	monv1beta1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// CheckSecretReference is the check of warnings about referenced Secrets
// that do not exist.
const CheckSecretReference = "secret-reference"

// SecretReader says which Secrets exist, from a metadata-only cache: no
// Secret's data is ever read, so a key cannot be checked, only the
// Secret's existence.
type SecretReader interface {
	SecretExists(namespace, name string) bool
}

// secretRef is one Secret an object references, at its field path.
type secretRef struct {
	at   *field.Path
	name string
}

var (
	coreSecretKeySelector = reflect.TypeFor[corev1.SecretKeySelector]()
	betaSecretKeySelector = reflect.TypeFor[monv1beta1.SecretKeySelector]()
)

// secretRefs lists every Secret key selector in v (a typed spec), of
// Kubernetes' type or the v1beta1 AlertmanagerConfig's own, with its field
// path from the JSON names: every one the operator reads when it builds the
// configuration, and drops the object when the Secret is missing.
func secretRefs(v reflect.Value, at *field.Path) []secretRef {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return secretRefs(v.Elem(), at)
	case reflect.Slice, reflect.Array:
		var out []secretRef
		for i := range v.Len() {
			out = append(out, secretRefs(v.Index(i), at.Index(i))...)
		}
		return out
	case reflect.Struct:
		switch v.Type() {
		case coreSecretKeySelector:
			return []secretRef{{at, v.Interface().(corev1.SecretKeySelector).Name}}
		case betaSecretKeySelector:
			return []secretRef{{at, v.Interface().(monv1beta1.SecretKeySelector).Name}}
		}
		var out []secretRef
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case name == "-":
				continue
			case f.Anonymous && name == "":
				out = append(out, secretRefs(v.Field(i), at)...)
			default:
				out = append(out, secretRefs(v.Field(i), at.Child(name))...)
			}
		}
		return out
	}
	return nil
}

// secretWarnings warns about each Secret spec references in namespace that
// secrets does not hold (nil: not checked). Warnings only: the Secret may
// be created next, and the cache may not have seen one created with the
// object.
func secretWarnings(kind, namespace string, spec any, secrets SecretReader) []Finding {
	if secrets == nil {
		return nil
	}
	var out []Finding
	for _, r := range secretRefs(reflect.ValueOf(spec), field.NewPath("spec")) {
		if r.name == "" || secrets.SecretExists(namespace, r.name) {
			continue
		}
		out = append(out, Finding{Check: CheckSecretReference, Level: LevelWarn, Err: field.Invalid(r.at.Child("name"), r.name,
			fmt.Sprintf("no Secret %s in namespace %s: the operator drops this %s from the generated configuration until it exists (create it, or correct the name; one created in the same apply may not be seen yet)", r.name, namespace, kind))})
	}
	return out
}
