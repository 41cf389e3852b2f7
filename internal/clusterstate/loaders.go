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
	// IsServed reports whether resource is served in group/version
	// (discovery).
	IsServed func(groupVersion, resource string) (bool, error)
	Interval time.Duration
	Log      logr.Logger

	followed []*followedKind
}

// NewDynamicPrometheuses checks the kinds through dc's discovery.
func NewDynamicPrometheuses(c informerCache, dc discovery.DiscoveryInterface, log logr.Logger) *DynamicPrometheuses {
	return &DynamicPrometheuses{Cache: c, Interval: CRDCheckInterval, Log: log, IsServed: func(gv, resource string) (bool, error) {
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
	if !d.Served(monv1.PrometheusesKind) {
		return nil, nil
	}
	return cachedPrometheuses{Cache: d.Cache, Agents: d.Served(monv1alpha1.PrometheusAgentsKind), Alertmanagers: d.Served(monv1.AlertmanagersKind)}.Prometheuses(ctx)
}

// followedKind is a kind whose informer follows its CRD: obj nil follows
// only whether it is served (the status' Reports, written, never read).
type followedKind struct {
	kind, gv, res string
	obj           client.Object
	consumes      string
	on            atomic.Bool
}

func (d *DynamicPrometheuses) kinds() []*followedKind {
	if d.followed == nil {
		d.followed = []*followedKind{
			{kind: monv1.PrometheusesKind, gv: monv1.SchemeGroupVersion.String(), res: "prometheuses", obj: &monv1.Prometheus{}, consumes: "warnings about monitors and rules no Prometheus loads"},
			{kind: monv1alpha1.PrometheusAgentsKind, gv: monv1alpha1.SchemeGroupVersion.String(), res: "prometheusagents", obj: &monv1alpha1.PrometheusAgent{}, consumes: "PrometheusAgents as loaders of monitors"},
			{kind: monv1.AlertmanagersKind, gv: monv1.SchemeGroupVersion.String(), res: "alertmanagers", obj: &monv1.Alertmanager{}, consumes: "warnings about AlertmanagerConfigs no Alertmanager loads"},
		}
	}
	return d.followed
}

// FollowStatusKinds also follows what the status reads: ServiceMonitors,
// PodMonitors, Probes, ScrapeConfigs and PrometheusRules (informers), and
// whether OpenReports' Reports are served. Call it before Sync.
func (d *DynamicPrometheuses) FollowStatusKinds() {
	status := "the monitoring status"
	d.followed = append(d.kinds(),
		&followedKind{kind: monv1.ServiceMonitorsKind, gv: monv1.SchemeGroupVersion.String(), res: "servicemonitors", obj: &monv1.ServiceMonitor{}, consumes: status},
		&followedKind{kind: monv1.PodMonitorsKind, gv: monv1.SchemeGroupVersion.String(), res: "podmonitors", obj: &monv1.PodMonitor{}, consumes: status},
		&followedKind{kind: monv1.ProbesKind, gv: monv1.SchemeGroupVersion.String(), res: "probes", obj: &monv1.Probe{}, consumes: status},
		&followedKind{kind: monv1alpha1.ScrapeConfigsKind, gv: monv1alpha1.SchemeGroupVersion.String(), res: "scrapeconfigs", obj: &monv1alpha1.ScrapeConfig{}, consumes: status},
		&followedKind{kind: monv1.PrometheusRuleKind, gv: monv1.SchemeGroupVersion.String(), res: "prometheusrules", obj: &monv1.PrometheusRule{}, consumes: status},
		&followedKind{kind: ReportKind, gv: ReportGroupVersion, res: "reports", consumes: "the status' OpenReports"},
	)
}

// The OpenReports kind the status writes.
const (
	ReportKind         = "Report"
	ReportGroupVersion = "openreports.io/v1alpha1"
)

// Served reports whether a followed kind is served now (its informer
// started, for the kinds with one).
func (d *DynamicPrometheuses) Served(kind string) bool {
	for _, k := range d.kinds() {
		if k.kind == kind {
			return k.on.Load()
		}
	}
	return false
}

// Sync starts or removes the informers to match what is served now.
func (d *DynamicPrometheuses) Sync(ctx context.Context) error {
	for _, k := range d.kinds() {
		served, err := d.IsServed(k.gv, k.res)
		if err != nil {
			return err
		}
		switch {
		case served && !k.on.Load():
			// Before the cache starts this only registers the informer;
			// after, it waits for its sync, so requests never read a
			// half-filled cache.
			if k.obj != nil {
				if _, err := d.Cache.GetInformer(ctx, k.obj); err != nil {
					return err
				}
			}
			k.on.Store(true)
			d.Log.Info("CRD served: informer started", "resource", k.res, "for", k.consumes)
		case !served && k.on.Load():
			k.on.Store(false)
			if k.obj != nil {
				if err := d.Cache.RemoveInformer(ctx, k.obj); err != nil {
					return err
				}
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
