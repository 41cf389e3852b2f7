package clusterstate

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/policy"
)

// CRDCheckInterval is how often promenroll looks whether the Prometheus and
// PrometheusAgent CRDs appeared or went.
const CRDCheckInterval = 30 * time.Second

// informerCache is what DynamicPrometheuses needs of the manager's cache.
type informerCache interface {
	client.Reader
	GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error)
	RemoveInformer(ctx context.Context, obj client.Object) error
}

// DynamicPrometheuses is the PrometheusLister of serve: it follows whether
// the Prometheus and PrometheusAgent kinds are served, starting their
// informers when a CRD appears (also after start-up) and removing them when
// it goes, so neither needs a restart. Requests read the caches only; the
// discovery check runs in the background.
type DynamicPrometheuses struct {
	Cache informerCache
	// Served reports whether resource is served in group/version
	// (discovery).
	Served   func(groupVersion, resource string) (bool, error)
	Interval time.Duration
	Log      logr.Logger

	prometheuses, agents atomic.Bool
}

// NewDynamicPrometheuses checks the kinds through dc's discovery.
func NewDynamicPrometheuses(c informerCache, dc discovery.DiscoveryInterface, log logr.Logger) *DynamicPrometheuses {
	return &DynamicPrometheuses{Cache: c, Interval: CRDCheckInterval, Log: log, Served: func(gv, resource string) (bool, error) {
		list, err := dc.ServerResourcesForGroupVersion(gv)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		for _, r := range list.APIResources {
			if r.Name == resource {
				return true, nil
			}
		}
		return false, nil
	}}
}

// Prometheuses implements PrometheusLister: nothing while no Prometheus CRD
// is served.
func (d *DynamicPrometheuses) Prometheuses(ctx context.Context) ([]policy.PrometheusSelectors, error) {
	if !d.prometheuses.Load() {
		return nil, nil
	}
	return cachedPrometheuses{Cache: d.Cache, Agents: d.agents.Load()}.Prometheuses(ctx)
}

// Sync starts or removes the informers to match what is served now.
func (d *DynamicPrometheuses) Sync(ctx context.Context) error {
	for _, k := range []struct {
		on       *atomic.Bool
		gv, res  string
		obj      client.Object
		consumes string
	}{
		{&d.prometheuses, monv1.SchemeGroupVersion.String(), "prometheuses", &monv1.Prometheus{}, "warnings about monitors and rules no Prometheus loads"},
		{&d.agents, monv1alpha1.SchemeGroupVersion.String(), "prometheusagents", &monv1alpha1.PrometheusAgent{}, "PrometheusAgents as loaders of monitors"},
	} {
		served, err := d.Served(k.gv, k.res)
		if err != nil {
			return err
		}
		switch {
		case served && !k.on.Load():
			// Before the cache starts this only registers the informer;
			// after, it waits for its sync, so requests never read a
			// half-filled cache.
			if _, err := d.Cache.GetInformer(ctx, k.obj); err != nil {
				return err
			}
			k.on.Store(true)
			d.Log.Info("CRD served: informer started", "resource", k.res, "for", k.consumes)
		case !served && k.on.Load():
			k.on.Store(false)
			if err := d.Cache.RemoveInformer(ctx, k.obj); err != nil {
				return err
			}
			d.Log.Info("CRD gone: informer removed", "resource", k.res, "for", k.consumes)
		case !served:
			d.Log.V(1).Info("CRD not served", "resource", k.res)
		}
	}
	return nil
}

// Start implements manager.Runnable: Sync every Interval until ctx ends.
// A failed check is logged and tried again.
func (d *DynamicPrometheuses) Start(ctx context.Context) error {
	t := time.NewTicker(d.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := d.Sync(ctx); err != nil {
				d.Log.Error(err, "check the Prometheus CRDs")
			}
		}
	}
}
