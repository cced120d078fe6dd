package plugin

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds per-method call counters and latency histograms, labelled
// by plugin and method. One Metrics serves every Server of a process.
type Metrics struct {
	calls   *prometheus.CounterVec
	errs    *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dockplug", Name: "plugin_calls_total", Help: "Plugin calls answered, by plugin and method.",
		}, []string{"plugin", "method"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dockplug", Name: "plugin_call_errors_total", Help: "Plugin calls answered with an error, by plugin and method.",
		}, []string{"plugin", "method"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "dockplug", Name: "plugin_call_duration_seconds", Help: "Time to answer a plugin call.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"plugin", "method"}),
	}
	reg.MustRegister(m.calls, m.errs, m.latency)
	return m
}

// methodMetrics are one method's children, resolved once at registration so
// the hot path does no label lookups.
type methodMetrics struct {
	calls, errs prometheus.Counter
	latency     prometheus.Observer
}

func (m *Metrics) method(plugin, method string) *methodMetrics {
	if m == nil {
		return nil
	}
	return &methodMetrics{
		calls:   m.calls.WithLabelValues(plugin, method),
		errs:    m.errs.WithLabelValues(plugin, method),
		latency: m.latency.WithLabelValues(plugin, method),
	}
}

func (mm *methodMetrics) observe(d time.Duration, failed bool) {
	if mm == nil {
		return
	}
	mm.calls.Inc()
	if failed {
		mm.errs.Inc()
	}
	mm.latency.Observe(d.Seconds())
}
