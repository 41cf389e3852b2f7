package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// kubelet plays the kubelet for the Pods the ReplicaSet and Job controllers create
// from the (mutated) pod templates: it binds each to the harness' Node,
// gives it an IP, serves a small /metrics endpoint on every TCP container
// port it declares, and reports it Running and Ready, so the endpoint
// controllers and Prometheus' discovery see what they would in a cluster.
type kubelet struct {
	c   *Cluster
	net *podNetwork

	mu   sync.Mutex
	pods map[types.UID]*runningPod
}

type runningPod struct {
	ip      string
	servers []*http.Server
	hits    map[string][]string // "ip:port" -> paths scraped
}

func (k *kubelet) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
		var pods corev1.PodList
		if err := k.c.Client.List(ctx, &pods); err != nil {
			continue
		}
		seen := map[types.UID]bool{}
		for i := range pods.Items {
			pod := &pods.Items[i]
			seen[pod.UID] = true
			if pod.DeletionTimestamp != nil {
				k.forget(pod.UID)
				_ = k.c.Client.Delete(ctx, pod, client.GracePeriodSeconds(0))
				continue
			}
			if err := k.start(ctx, pod); err != nil {
				fmt.Fprintf(k.c.opts.Log, "e2e kubelet: pod %s/%s: %v\n", pod.Namespace, pod.Name, err)
			}
		}
		k.mu.Lock()
		for uid := range k.pods {
			if !seen[uid] {
				k.mu.Unlock()
				k.forget(uid)
				k.mu.Lock()
			}
		}
		k.mu.Unlock()
	}
}

// start runs a Pod it has not run yet.
func (k *kubelet) start(ctx context.Context, pod *corev1.Pod) error {
	k.mu.Lock()
	rp, known := k.pods[pod.UID]
	k.mu.Unlock()
	if known && pod.Status.PodIP == rp.ip && podReady(pod) {
		return nil
	}
	if !known {
		ip, err := k.net.allocate()
		if err != nil {
			return err
		}
		rp = &runningPod{ip: ip, hits: map[string][]string{}}
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
					continue
				}
				addr := net.JoinHostPort(ip, strconv.Itoa(int(p.ContainerPort)))
				l, err := k.net.listen(addr)
				if err != nil {
					return fmt.Errorf("listen on %s: %w", addr, err)
				}
				status, _ := strconv.Atoi(pod.Annotations[MetricsStatusAnnotation])
				srv := &http.Server{Handler: k.metricsHandler(rp, addr, pod.Namespace+"/"+pod.Name, status), ReadHeaderTimeout: 5 * time.Second}
				go func() { _ = srv.Serve(l) }()
				rp.servers = append(rp.servers, srv)
			}
		}
		k.mu.Lock()
		k.pods[pod.UID] = rp
		k.mu.Unlock()
	}
	if pod.Spec.NodeName == "" {
		binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace}, Target: corev1.ObjectReference{Kind: "Node", Name: nodeName}}
		if err := k.c.Client.SubResource("binding").Create(ctx, pod, binding); err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("bind: %w", err)
		}
		if err := k.c.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
	}
	now := metav1.Now()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.HostIP = "127.0.0.1"
	pod.Status.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
	pod.Status.PodIP = rp.ip
	pod.Status.PodIPs = []corev1.PodIP{{IP: rp.ip}}
	pod.Status.StartTime = &now
	pod.Status.Conditions = nil
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	pod.Status.ContainerStatuses = nil
	started := true
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	if err := k.c.Client.Status().Update(ctx, pod); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// MetricsStatusAnnotation on a pod (template) makes its ports answer every
// scrape with that HTTP status instead of metrics: a broken /metrics.
const MetricsStatusAnnotation = "e2e.promenroll.io/metrics-status"

// metricsHandler answers every path with a small exposition (or status,
// when not 0) and records the path, so tests can tell which port and path
// a scrape used.
func (k *kubelet) metricsHandler(rp *runningPod, addr, pod string, status int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		rp.hits[addr] = append(rp.hits[addr], r.URL.Path)
		n := len(rp.hits[addr])
		k.mu.Unlock()
		if status != 0 {
			http.Error(w, "metrics broken on purpose", status)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP promenroll_e2e_scrapes_total Scrapes of this pod port.\n# TYPE promenroll_e2e_scrapes_total counter\npromenroll_e2e_scrapes_total{served_by=%q} %d\n", pod, n)
	})
}

func (k *kubelet) hits(addr string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, rp := range k.pods {
		if h, ok := rp.hits[addr]; ok {
			return append([]string(nil), h...)
		}
	}
	return nil
}

func (k *kubelet) forget(uid types.UID) {
	k.mu.Lock()
	rp := k.pods[uid]
	delete(k.pods, uid)
	k.mu.Unlock()
	if rp != nil {
		for _, s := range rp.servers {
			_ = s.Close()
		}
	}
}

func (k *kubelet) closeAll() {
	k.mu.Lock()
	uids := make([]types.UID, 0, len(k.pods))
	for uid := range k.pods {
		uids = append(uids, uid)
	}
	k.mu.Unlock()
	for _, uid := range uids {
		k.forget(uid)
	}
}
