package clusterstate

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Secrets are watched metadata only (--watch-secrets): the API server sends
// PartialObjectMetadata, never data. Metadata is not harmless, though:
// `kubectl apply` stores a Secret's whole manifest, data included, in the
// kubectl.kubernetes.io/last-applied-configuration annotation. The
// transform keeps a Secret's name and namespace only, before anything is
// cached; what crossed the wire is dropped with the decoded object.

// SecretMeta is an empty Secret of the metadata-only informer.
func SecretMeta() *metav1.PartialObjectMetadata {
	s := &metav1.PartialObjectMetadata{}
	s.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return s
}

// trimSecret keeps a Secret's name, namespace and resourceVersion.
func trimSecret(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	out := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, ResourceVersion: m.ResourceVersion}}
	return out, nil
}

// NewSecretCache is the Secrets' own cache: not the manager's, whose
// caches are configured by kind, so that self-managed TLS keeps watching
// its one Secret, by name, typed, while this one watches every Secret,
// metadata only, trimmed. Add it to the manager (it is a Runnable) and
// register SecretMeta's informer before it starts.
func NewSecretCache(cfg *rest.Config, scheme *runtime.Scheme, mapper meta.RESTMapper) (cache.Cache, error) {
	return cache.New(cfg, cache.Options{Scheme: scheme, Mapper: mapper, DefaultTransform: trimSecret})
}

// CachedSecrets is the gates' policy.SecretReader: whether a Secret exists,
// from the metadata-only informer.
type CachedSecrets struct {
	Cache client.Reader
}

// SecretExists implements policy.SecretReader. An error other than not
// found (a cache still syncing, which a read waits for, at most
// secretWait) counts as existing: the check is a warning, and a false one
// teaches users to ignore it.
func (c CachedSecrets) SecretExists(namespace, name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), secretWait)
	defer cancel()
	err := c.Cache.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, SecretMeta())
	return !apierrors.IsNotFound(err)
}

// secretWait bounds a read of a cache that has not synced yet.
const secretWait = 50 * time.Millisecond
