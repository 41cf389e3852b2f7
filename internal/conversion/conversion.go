// Package conversion serves the AlertmanagerConfig CRD's conversion between
// monitoring.coreos.com/v1alpha1 and v1beta1 with prometheus-operator's own
// conversion functions (v1alpha1 is the hub; v1beta1's ConvertTo and
// ConvertFrom), through controller-runtime's conversion webhook handler:
// what the operator's admission webhook serves at /convert, so a cluster
// can run promenroll instead of it. The CRD's spec.conversion points here
// (docs/gates.md); promenroll never changes the CRD itself.
package conversion

import (
	"net/http"

	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	monv1beta1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/conversion"
)

// Path is where the handler is served.
const Path = "/convert"

// Handler converts ConversionReviews of AlertmanagerConfigs (and of the
// other kinds of those two versions that the operator's types make
// convertible).
func Handler() (http.Handler, error) {
	scheme := runtime.NewScheme()
	if err := monv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := monv1beta1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return conversion.NewWebhookHandler(scheme, conversion.NewRegistry()), nil
}
