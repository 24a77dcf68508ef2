# METADATA
# title: Pod specs and images of the object under review
# description: |
#   Gatekeeper plumbing shared by the imagegate ConstraintTemplates; it makes
#   no external-data call. images are the distinct images, sorted, of every
#   container, init container and ephemeral container of the reviewed object's
#   pod spec:
#
#   - Pod: spec;
#   - Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController,
#     Job: spec.template.spec;
#   - CronJob: spec.jobTemplate.spec.template.spec.
#
#   Other kinds have no images. A DELETE has no images: removing a workload
#   never depends on its images. Each image is the string exactly as written
#   in the pod spec, which is also the key sent to imagegate.
package lib.imagegate.gatekeeper.pods

_template_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}

_container_fields := ["containers", "initContainers", "ephemeralContainers"]

# pod_spec(obj) is the pod spec of obj; undefined for kinds without one.
pod_spec(obj) := obj.spec if {
	obj.kind == "Pod"
} else := obj.spec.template.spec if {
	obj.kind in _template_kinds
} else := obj.spec.jobTemplate.spec.template.spec if {
	obj.kind == "CronJob"
}

# images_of(obj) lists the distinct container images of obj's pod spec, sorted.
images_of(obj) := sort({c.image |
	spec := pod_spec(obj)
	is_object(spec)
	some field in _container_fields
	some c in _list(object.get(spec, field, []))
	is_string(c.image)
})

_list(x) := x if {
	is_array(x)
} else := []

# images are the images of the object under review; none for a DELETE.
images := [] if {
	input.review.operation == "DELETE"
} else := images_of(input.review.object)
