// Command service is the Weft SDK twin of the Go SDK guest gosdk/service.
// Plugin config "service": a plugin on no listener (a Wasm service) that
// registers queue "jobs", ticks every 10ms (shared data service.ticks),
// calls cluster "up" out once (GET /from-service; service.callout = the
// answer's :status) and drains "jobs" into service.seen ("seen:a,b").
// Plugin config "filter": on request headers it enqueues x-enqueue's value
// on "jobs" of its own vm_id and adds x-service-ticks, x-service-callout
// and x-service-seen from shared data.
package main

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/weftmesh/weft/sdk"
)

func main() {}

func init() { sdk.Register(newPlugin) }

type plugin struct {
	ticks   int
	calling bool
}

func newPlugin(cfg []byte) (sdk.Plugin, error) {
	switch string(cfg) {
	case "service":
		if _, err := sdk.RegisterQueue("jobs"); err != nil {
			return nil, fmt.Errorf("register queue: %w", err)
		}
		if err := sdk.SetTickPeriod(10 * time.Millisecond); err != nil {
			return nil, fmt.Errorf("tick period: %w", err)
		}
		return &plugin{}, nil
	case "filter":
		return filterPlugin{}, nil
	}
	return nil, fmt.Errorf("unknown role %q", cfg)
}

func (*plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return nil }

func (p *plugin) OnTick() {
	p.ticks++
	set("service.ticks", strconv.Itoa(p.ticks))
	if p.calling {
		return
	}
	p.calling = true
	hs := [][2]string{{":method", "GET"}, {":path", "/from-service"}, {":authority", "up"}}
	if _, err := sdk.DispatchPluginHTTPCall("up", hs, nil, 5*time.Second, func(r *sdk.HTTPCallResponse) {
		st := "failed"
		if r != nil && r.Err == nil {
			st = strconv.Itoa(r.Status)
		}
		set("service.callout", st)
	}); err != nil {
		set("service.callout", "dispatch failed: "+err.Error())
	}
}

func (p *plugin) OnQueueReady(q sdk.Queue) {
	for {
		item, err := q.Dequeue()
		if err != nil {
			return
		}
		seen := get("service.seen")
		if seen == "" {
			seen = "seen:" + string(item)
		} else {
			seen += "," + string(item)
		}
		set("service.seen", seen)
	}
}

type filterPlugin struct{}

func (filterPlugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return filter{} }

type filter struct{}

func (filter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	h := s.RequestHeaders()
	if v, ok := h.Get("x-enqueue"); ok {
		vmID, err := sdk.PropertyString("plugin_vm_id")
		must(err)
		q, err := sdk.ResolveQueue(vmID, "jobs")
		must(err)
		must(q.Enqueue([]byte(v)))
	}
	for _, k := range []string{"ticks", "callout", "seen"} {
		must(h.Add("x-service-"+k, get("service."+k)))
	}
	return sdk.Continue
}

func get(key string) string {
	v, _, err := sdk.GetSharedData(key)
	if err != nil && !errors.Is(err, sdk.StatusNotFound) {
		panic(err)
	}
	return string(v)
}

func set(key, val string) { must(sdk.SetSharedData(key, []byte(val), 0)) }

func must(err error) {
	if err != nil {
		panic(err)
	}
}
