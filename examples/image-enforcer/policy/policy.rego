# An OPA image_enforcer-style policy, written in pre-1.0 (v0) Rego, that
# imagegate runs unmodified with:
#
#   policy:
#     dir: examples/image-enforcer/policy
#     regoVersion: v0
#     query: data.io.k8s.image_policy.verify
#
# The input is the ImageReview; the decision is a whole ImageReview whose
# status imagegate returns. Production may only run images whose repository
# is listed in data.trusted and never a "latest" tag.

package io.k8s.image_policy

verify = {
    "apiVersion": "imagepolicy.k8s.io/v1alpha1",
    "kind": "ImageReview",
    "status": {
        "allowed": allow,
        "reason": reason,
    },
}

default allow = false

allow { not deny }

default deny = false

deny { count(violations) > 0 }

reason = concat("; ", violations) { deny }

reason = "" { not deny }

protected_namespaces = {"production"}

violations[msg] {
    protected_namespaces[input.spec.namespace]
    image := input.spec.containers[_].image
    endswith(image, ":latest")
    msg := sprintf("image %v uses the latest tag", [image])
}

violations[msg] {
    protected_namespaces[input.spec.namespace]
    image := input.spec.containers[_].image
    parts := split(image, ":")
    not data.trusted[parts[0]]
    msg := sprintf("image %v is not from a trusted repository", [image])
}
