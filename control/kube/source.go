package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
	"gopkg.in/yaml.v3"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/store"
)

// DefaultDebounce is how long the source gathers cluster events before it
// translates and applies them: short, so an endpoint that stops being
// ready leaves the load balancers well within a second.
const DefaultDebounce = 20 * time.Millisecond

// DefaultSyncTimeout bounds the informers' first list at Start.
const DefaultSyncTimeout = 2 * time.Minute

// Options configure a Source.
type Options struct {
	// Config reaches the API server (LoadConfig).
	Config *rest.Config
	// Store receives the translated resources as store.SourceKube; open it
	// with store.Options.KubeSource set.
	Store *store.Store
	// Translators turn the cluster into mesh resources; nil: Discovery()
	// alone. Each owns the resources it returns; no two may return the
	// same resource.
	Translators []Translator
	// Debounce is how long events are gathered before a sync (default
	// DefaultDebounce).
	Debounce time.Duration
	// SyncTimeout bounds the first list of every informer (default
	// DefaultSyncTimeout): RBAC that forbids a list fails Start with it.
	SyncTimeout time.Duration
	// Prepare, when set, sees the resources to write before they are
	// applied (the server pulls OCI modules there); an error refuses them.
	Prepare func([]*mesh.Resource) error
	Logger  *zap.Logger
}

// Translator turns what informers hold into mesh resources. Watch runs
// once, before the informers start, and registers what Translate reads;
// Translate runs after every batch of cluster events, always from the
// same goroutine, and returns every resource the translator owns now
// (the source applies the difference).
type Translator struct {
	// Name names the translator in logs and Status ("discovery").
	Name string
	// Watch registers the informers Translate reads (Informers.Track).
	// Optional: Cache's informers are always watched.
	Watch func(*Informers) error
	// Translate returns the translator's resources and the status to
	// write back. An error keeps its resources as they were.
	Translate func(*Cache) (Output, error)
}

// Output is one translation.
type Output struct {
	// Resources are every mesh resource the translator owns. Each one's
	// File names the Kubernetes object it comes from ("HTTPRoute ns/name"):
	// the store shows it as the owner, and errors name it.
	Resources []*mesh.Resource
	// Status are writes back to Kubernetes objects, made after the
	// resources are applied (or refused).
	Status []StatusUpdate
	// Warnings are objects (or parts) left out of the mesh, and why:
	// shown in Status.
	Warnings []string
}

// StatusUpdate writes one Kubernetes object's status after a sync.
type StatusUpdate struct {
	// Object names it ("HTTPRoute default/web"); one write per object and
	// sync, the latest wins.
	Object string
	// Resources are the mesh resources translated from the object, whose
	// acceptance the status reports.
	Resources []mesh.Key
	// Digest identifies the status to write (e.g. a hash of the
	// conditions): the source skips a write whose Digest and refusals
	// equal the last successful write for the same Object.
	Digest string
	// Write writes the status: refused holds the reason of each of
	// Resources the store refused (empty when all were accepted). It runs
	// on the source's status writer, never concurrently with itself; an
	// error is logged and retried at the next sync.
	Write func(ctx context.Context, refused map[mesh.Key]error) error
}

// Informers gives translators the cluster: a client, a shared informer
// factory for Kubernetes' own types, and Track for the informers of other
// clientsets (Gateway API, weft's CRDs).
type Informers struct {
	// Config and Client reach the API server (e.g. to build another
	// clientset for status writes).
	Config *rest.Config
	Client kubernetes.Interface
	// Factory makes informers of Kubernetes' own types; an informer made
	// here still needs Track to trigger syncs.
	Factory informers.SharedInformerFactory

	src *Source
}

// Track makes an informer's events trigger syncs, and Start wait for its
// first list. An informer from another factory is started by that factory:
// register its Start with OnStart.
func (in *Informers) Track(inf cache.SharedIndexInformer) error {
	s := in.src
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.kick() },
		UpdateFunc: func(any, any) { s.kick() },
		DeleteFunc: func(any) { s.kick() },
	}); err != nil {
		return err
	}
	s.synced = append(s.synced, inf.HasSynced)
	return nil
}

// OnStart runs fn when the informers start (stop closes at Close): start
// another informer factory there.
func (in *Informers) OnStart(fn func(stop <-chan struct{})) {
	in.src.onStart = append(in.src.onStart, fn)
}

// Cache is what every translator may read: Services and EndpointSlices
// (all namespaces), as the informers hold them now. Objects read here must
// not be modified.
type Cache struct {
	Services       corelisters.ServiceLister
	EndpointSlices discoverylisters.EndpointSliceLister
}

// Status is the Kubernetes source's last sync, for /v1/status.
type Status struct {
	Server    string    `json:"server"`
	LastSync  time.Time `json:"last_sync,omitempty"`
	Revision  int64     `json:"revision"`
	Resources int       `json:"resources"`
	// Refused are resources the store refused (each with why); the ones
	// in force before stay.
	Refused []string `json:"refused,omitempty"`
	// Warnings are what the translators left out, and why.
	Warnings  []string `json:"warnings,omitempty"`
	LastError string   `json:"last_error,omitempty"`
}

// Source syncs a Kubernetes cluster into the store.
type Source struct {
	o       Options
	log     *zap.Logger
	inf     *Informers
	cache   *Cache
	synced  []cache.InformerSynced
	onStart []func(<-chan struct{})

	kicks  chan struct{}
	stop   chan struct{}
	done   chan struct{}
	status *statusWriter

	// applied is what the store holds from each translator, by key;
	// bodies the content of this sync's translations (before Prepare).
	applied map[mesh.Key]appliedRes
	bodies  map[mesh.Key][]byte

	mu sync.Mutex
	st Status
}

type appliedRes struct {
	translator string
	content    []byte
}

// Start connects to the cluster, waits for the informers' first lists,
// applies the first translation (replacing whatever an earlier run of the
// source left in the store), then follows the cluster until Close. A
// cluster that cannot be listed fails Start; a translation the store
// refuses does not (it is reported in Status and the log).
func Start(ctx context.Context, o Options) (*Source, error) {
	if o.Config == nil || o.Store == nil {
		return nil, errors.New("kube: Options.Config and Options.Store are required")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = DefaultSyncTimeout
	}
	if o.Translators == nil {
		o.Translators = []Translator{Discovery()}
	}
	client, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	s := &Source{o: o, log: o.Logger.With(zap.String("source", "kube")), kicks: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), applied: map[mesh.Key]appliedRes{}}
	s.st.Server = o.Config.Host
	f := informers.NewSharedInformerFactory(client, 0)
	s.inf = &Informers{Config: o.Config, Client: client, Factory: f, src: s}
	svc, eps := f.Core().V1().Services(), f.Discovery().V1().EndpointSlices()
	s.cache = &Cache{Services: svc.Lister(), EndpointSlices: eps.Lister()}
	for _, inf := range []cache.SharedIndexInformer{svc.Informer(), eps.Informer()} {
		if err := s.inf.Track(inf); err != nil {
			return nil, fmt.Errorf("kube: %w", err)
		}
	}
	names := map[string]bool{}
	for _, t := range o.Translators {
		if t.Name == "" || names[t.Name] || t.Translate == nil {
			return nil, fmt.Errorf("kube: translator %q: needs a unique name and Translate", t.Name)
		}
		names[t.Name] = true
		if t.Watch != nil {
			if err := t.Watch(s.inf); err != nil {
				return nil, fmt.Errorf("kube: translator %s: %w", t.Name, err)
			}
		}
	}
	f.Start(s.stop)
	for _, fn := range s.onStart {
		fn(s.stop)
	}
	sctx, cancel := context.WithTimeout(ctx, o.SyncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), s.synced...) {
		s.Close()
		return nil, fmt.Errorf("kube: the informers did not list the cluster at %s within %s (is it reachable, and does the RBAC allow list and watch? see the log): %w", o.Config.Host, o.SyncTimeout, context.Cause(sctx))
	}
	s.status = newStatusWriter(s.log)
	s.sync(true)
	go s.run(ctx)
	return s, nil
}

// Close stops the informers and the sync loop.
func (s *Source) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	if s.status != nil {
		<-s.done
		s.status.close()
	}
	s.inf.Factory.Shutdown()
}

// Client is the source's Kubernetes client.
func (s *Source) Client() kubernetes.Interface { return s.inf.Client }

// Status reports the last sync.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Refused = append([]string(nil), s.st.Refused...)
	return st
}

func (s *Source) kick() {
	select {
	case s.kicks <- struct{}{}:
	default:
	}
}

func (s *Source) run(ctx context.Context) {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-ctx.Done():
			return
		case <-s.kicks:
		}
		// Gather the burst this event starts.
		t := time.NewTimer(s.o.Debounce)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		select {
		case <-s.kicks:
		default:
		}
		s.sync(false)
	}
}

// translation is one translator's output, keyed.
type translation struct {
	name   string
	ok     bool // false: Translate failed; keep what is applied
	res    map[mesh.Key]*mesh.Resource
	body   map[mesh.Key][]byte
	status []StatusUpdate
}

// sync translates the cluster and applies the difference from what the
// store holds; first replaces every kube resource in the store.
func (s *Source) sync(first bool) {
	start := time.Now()
	var ts []*translation
	var errs []error
	var warnings []string
	owner := map[mesh.Key]string{}
	s.bodies = map[mesh.Key][]byte{}
	for _, t := range s.o.Translators {
		tr := &translation{name: t.Name, res: map[mesh.Key]*mesh.Resource{}, body: map[mesh.Key][]byte{}}
		ts = append(ts, tr)
		out, err := t.Translate(s.cache)
		if err != nil {
			errs = append(errs, fmt.Errorf("translator %s: %w", t.Name, err))
			continue
		}
		tr.ok, tr.status = true, out.Status
		warnings = append(warnings, out.Warnings...)
		for _, r := range out.Resources {
			if r.Namespace == "" {
				r.Namespace = mesh.DefaultNamespace
			}
			k := r.Key()
			if o, dup := owner[k]; dup {
				errs = append(errs, fmt.Errorf("translator %s: %s is also translator %s's; kept %s's", t.Name, k, o, o))
				continue
			}
			owner[k] = t.Name
			tr.res[k], tr.body[k] = r, content(r)
			s.bodies[k] = tr.body[k]
		}
	}
	translated := time.Since(start)
	refused := map[mesh.Key]error{}
	var rev int64
	if first {
		rev = s.replaceAll(ts, refused)
	} else {
		rev = s.applyDiff(ts, refused)
	}
	n := len(s.applied)
	s.mu.Lock()
	s.st.LastSync, s.st.Resources, s.st.Warnings = time.Now().UTC(), n, warnings
	if rev > 0 {
		s.st.Revision = rev
	}
	s.st.Refused = nil
	for k, err := range refused {
		s.st.Refused = append(s.st.Refused, fmt.Sprintf("%s: %v", k, err))
		errs = append(errs, err)
	}
	sort.Strings(s.st.Refused)
	s.st.LastError = ""
	if err := errors.Join(errs...); err != nil {
		s.st.LastError = err.Error()
	}
	s.mu.Unlock()
	if len(errs) > 0 {
		s.log.Error("kube source: part of the cluster was not applied; what was in force stays", zap.Error(errors.Join(errs...)))
	}
	s.log.Debug("kube source synced", zap.Int("resources", n), zap.Duration("translate", translated), zap.Duration("took", time.Since(start)))
	for _, tr := range ts {
		for _, u := range tr.status {
			s.status.queue(u, refused)
		}
	}
}

// content is what tells two translations of a resource apart.
func content(r *mesh.Resource) []byte {
	b, _ := yaml.Marshal(r.Spec)
	return append(b, r.File...)
}

// replaceAll writes every translated resource and deletes every other kube
// resource of the store (left by an earlier run).
func (s *Source) replaceAll(ts []*translation, refused map[mesh.Key]error) int64 {
	var puts []*mesh.Resource
	var from []string
	for _, tr := range ts {
		for _, r := range tr.res {
			puts = append(puts, r)
			from = append(from, tr.name)
		}
	}
	if err := s.prepare(puts); err == nil {
		res, err := s.o.Store.Apply(store.Change{Who: "kube", Source: store.SourceKube, Action: "sync", Puts: puts, ReplaceSource: true})
		if err == nil {
			for i, r := range puts {
				s.applied[r.Key()] = appliedRes{translator: from[i], content: s.bodies[r.Key()]}
			}
			s.log.Info("kube source synced", zap.Int("resources", len(puts)), zap.Int64("revision", res.Revision), zap.Int("changed", len(res.Changed)))
			return res.Revision
		}
		s.log.Warn("kube source: the cluster as a whole was refused; applying it resource by resource", zap.Error(err))
	}
	// Something is refused: learn what the store holds from us, then apply
	// the difference piece by piece so the rest goes in.
	for _, o := range s.o.Store.List("") {
		if o.Source == store.SourceKube {
			s.applied[o.Resource.Key()] = appliedRes{translator: "?", content: nil}
		}
	}
	return s.applyDiff(ts, refused)
}

// applyDiff applies what changed since the last sync: in one change when
// the store accepts it, else translator by translator, then resource by
// resource for a refused translator, so one bad object does not hold the
// rest of the cluster back.
func (s *Source) applyDiff(ts []*translation, refused map[mesh.Key]error) int64 {
	type diff struct {
		tr      *translation
		puts    []*mesh.Resource
		deletes []mesh.Key
	}
	var ds []*diff
	var all diff
	for _, tr := range ts {
		d := &diff{tr: tr}
		if tr.ok {
			for k, r := range tr.res {
				if a, ok := s.applied[k]; !ok || !bytes.Equal(a.content, tr.body[k]) {
					d.puts = append(d.puts, r)
				}
			}
		}
		ds = append(ds, d)
	}
	// A key applied before that no translator returns now goes, unless its
	// translator failed this time.
	failed := map[string]bool{}
	owned := map[mesh.Key]bool{}
	for _, tr := range ts {
		failed[tr.name] = !tr.ok
		for k := range tr.res {
			owned[k] = true
		}
	}
	for k, a := range s.applied {
		if owned[k] || failed[a.translator] {
			continue
		}
		d := ds[0]
		for _, x := range ds {
			if x.tr.name == a.translator {
				d = x
			}
		}
		d.deletes = append(d.deletes, k)
	}
	for _, d := range ds {
		sort.Slice(d.puts, func(i, j int) bool { return d.puts[i].Key().Less(d.puts[j].Key()) })
		sort.Slice(d.deletes, func(i, j int) bool { return d.deletes[i].Less(d.deletes[j]) })
		all.puts = append(all.puts, d.puts...)
		all.deletes = append(all.deletes, d.deletes...)
	}
	if len(all.puts) == 0 && len(all.deletes) == 0 {
		return 0
	}
	var rev int64
	apply := func(tr string, puts []*mesh.Resource, deletes []mesh.Key) error {
		if err := s.prepare(puts); err != nil {
			return err
		}
		c := store.Change{Who: "kube", Source: store.SourceKube, Action: "sync", Puts: puts}
		for _, k := range deletes {
			c.Deletes = append(c.Deletes, store.Delete{Key: k})
		}
		res, err := s.o.Store.Apply(c)
		var nf *store.NotFoundError
		if errors.As(err, &nf) && len(deletes) == 1 && len(puts) == 0 {
			err = nil // already gone (taken over or deleted through the API)
		}
		if err != nil {
			return err
		}
		for _, r := range puts {
			owner := tr
			if owner == "" {
				owner = s.translatorOf(ts, r.Key())
			}
			s.applied[r.Key()] = appliedRes{translator: owner, content: s.bodies[r.Key()]}
		}
		for _, k := range deletes {
			delete(s.applied, k)
		}
		rev = max(rev, res.Revision)
		return nil
	}
	if err := apply("", all.puts, all.deletes); err == nil {
		return rev
	}
	for _, d := range ds {
		if len(d.puts) == 0 && len(d.deletes) == 0 {
			continue
		}
		if err := apply(d.tr.name, d.puts, d.deletes); err == nil {
			continue
		}
		for _, r := range d.puts {
			if err := apply(d.tr.name, []*mesh.Resource{r}, nil); err != nil {
				refused[r.Key()] = err
			}
		}
		for _, k := range d.deletes {
			if err := apply(d.tr.name, nil, []mesh.Key{k}); err != nil {
				refused[k] = err
			}
		}
	}
	return rev
}

func (s *Source) translatorOf(ts []*translation, k mesh.Key) string {
	for _, tr := range ts {
		if _, ok := tr.res[k]; ok {
			return tr.name
		}
	}
	return ""
}

func (s *Source) prepare(rs []*mesh.Resource) error {
	if s.o.Prepare == nil || len(rs) == 0 {
		return nil
	}
	return s.o.Prepare(rs)
}
