package clusterstate

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/policy"
)

// NamespaceGetter returns the labels and annotations of a namespace.
type NamespaceGetter interface {
	Namespace(ctx context.Context, name string) (policy.Namespace, error)
}

// NamespaceGetterFunc adapts a function to NamespaceGetter.
type NamespaceGetterFunc func(ctx context.Context, name string) (policy.Namespace, error)

// Namespace implements NamespaceGetter.
func (f NamespaceGetterFunc) Namespace(ctx context.Context, name string) (policy.Namespace, error) {
	return f(ctx, name)
}

// CachedNamespaces reads namespaces' metadata from the manager's informer
// cache (list/watch, metadata only), and falls back to a live GET for a
// namespace the cache has not seen yet: a namespace and its first
// Deployment are often applied in one `kubectl apply`.
type CachedNamespaces struct {
	Cache client.Reader
	Live  client.Reader
}

// Namespace implements NamespaceGetter.
func (c CachedNamespaces) Namespace(ctx context.Context, name string) (policy.Namespace, error) {
	ns := NamespaceMeta()
	err := c.Cache.Get(ctx, client.ObjectKey{Name: name}, ns)
	if apierrors.IsNotFound(err) && c.Live != nil {
		ns = NamespaceMeta()
		err = c.Live.Get(ctx, client.ObjectKey{Name: name}, ns)
	}
	if err != nil {
		return policy.Namespace{Name: name}, fmt.Errorf("get namespace %s: %w", name, err)
	}
	return policy.Namespace{Name: name, Labels: ns.Labels, Annotations: ns.Annotations}, nil
}

// NamespaceMeta is an empty Namespace of the metadata-only informer.
func NamespaceMeta() *metav1.PartialObjectMetadata {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return ns
}
