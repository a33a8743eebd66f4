package gatewayapi

import (
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// MergeStatus merges weft's entries into a route's stored status.parents:
// other controllers' entries are kept as they are; weft's entries become
// ours (one per Service parentRef, those for parentRefs that are gone are
// removed); a condition whose status did not change keeps its
// lastTransitionTime, a changed one gets now. write is false when nothing
// changed, or when a stored weft condition has a newer observedGeneration
// than ours (this view of the route is stale: a later event brings the new
// one), so a status is written only when it changes.
func MergeStatus(stored []gwv1.RouteParentStatus, ours RouteStatus, now metav1.Time) (merged []gwv1.RouteParentStatus, write bool) {
	old := map[int]gwv1.RouteParentStatus{}
	for i, ps := range stored {
		if ps.ControllerName != ControllerName {
			merged = append(merged, ps)
			continue
		}
		old[i] = ps
	}
	for _, ps := range ours.Parents {
		var prev *gwv1.RouteParentStatus
		for i, o := range old {
			if equality.Semantic.DeepEqual(o.ParentRef, ps.ParentRef) {
				o := o
				prev = &o
				delete(old, i)
				break
			}
		}
		next := ps
		next.Conditions = nil
		for _, c := range ps.Conditions {
			c.LastTransitionTime = now
			if prev != nil {
				for _, pc := range prev.Conditions {
					if pc.Type != c.Type {
						continue
					}
					if pc.ObservedGeneration > c.ObservedGeneration {
						return stored, false
					}
					if pc.Status == c.Status {
						c.LastTransitionTime = pc.LastTransitionTime
					}
				}
			}
			next.Conditions = append(next.Conditions, c)
		}
		merged = append(merged, next)
	}
	return merged, !equality.Semantic.DeepEqual(stored, merged)
}
