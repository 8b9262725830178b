package waitroom

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxMetricRooms bounds the rooms a scrape reports, and so its cost (a count of each one's
// waiting entries) and the series it makes.
const maxMetricRooms = 50

// scrapeTimeout bounds the store reads of one scrape.
const scrapeTimeout = 5 * time.Second

// collector reports each room's state from the store at each scrape: what an on-sale's alerts
// watch (a queue that grows while nobody is admitted, a room left paused).
type collector struct {
	s                               *Service
	waiting, admitted, paused, rate *prometheus.Desc
}

// Collector returns the rooms' metrics, to register once: for each of the first rooms in show
// order (at most 50), boxoffice_waitroom_waiting, boxoffice_waitroom_admitted_total,
// boxoffice_waitroom_paused and boxoffice_waitroom_admit_per_second, by show. They are the
// store's figures, the same on every server: aggregate them with max, not sum.
func (s *Service) Collector() prometheus.Collector {
	labels := []string{"show"}
	scope := " The store's figure, the same on every server; at most the first 50 rooms in show order."
	return &collector{s: s,
		waiting:  prometheus.NewDesc("boxoffice_waitroom_waiting", "Buyers in a waiting room's queue not yet admitted."+scope, labels, nil),
		admitted: prometheus.NewDesc("boxoffice_waitroom_admitted_total", "Buyers a waiting room has let through since it was made."+scope, labels, nil),
		paused:   prometheus.NewDesc("boxoffice_waitroom_paused", "1 while a waiting room is paused (nobody admitted), else 0."+scope, labels, nil),
		rate:     prometheus.NewDesc("boxoffice_waitroom_admit_per_second", "The most buyers a waiting room lets through a second."+scope, labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.waiting, c.admitted, c.paused, c.rate} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A store that fails the read reports nothing this
// scrape (the absence is what an alert on the series sees) and is logged.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.s.base, scrapeTimeout)
	defer cancel()
	rooms, err := c.s.Rooms(ctx, maxMetricRooms)
	if err != nil {
		c.s.log.Debug("metrics: read the waiting rooms", "err", err)
		return
	}
	for _, r := range rooms {
		paused := 0.0
		if r.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(r.Waiting), r.ShowID)
		ch <- prometheus.MustNewConstMetric(c.admitted, prometheus.CounterValue, float64(r.Admitted), r.ShowID)
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, paused, r.ShowID)
		ch <- prometheus.MustNewConstMetric(c.rate, prometheus.GaugeValue, float64(r.AdmitPerSecond), r.ShowID)
	}
}
