# METADATA
# title: imagegate ImageReview decision
# description: |
#   The bundled entrypoint for kube-apiserver's ImagePolicyWebhook. input is the
#   ImageReview exactly as the apiserver sent it. Rule parameters come from the
#   service config (policy.params, mounted at data.imagegate.params):
#
#     rules:        default parameters per rule (pinning, registry, naming, age,
#                   freshness, signature, attestation); a rule runs when it has
#                   parameters, pinning and registry always do unless
#                   {enabled: false}
#     namespaces:   [{names: [glob…], rules: {…}}], the first match's rules
#                   are merged over the defaults, rule by rule
#     exempt:       [glob…] namespaces never checked (system namespaces)
#     audit:        [glob…] namespaces where violations are recorded in
#                   auditAnnotations but admitted
#     breakGlass:   {annotation: <key>, namespaces: [glob…]} an annotation
#                   (value "true") that admits despite violations, only in
#                   these namespaces, always recorded
#
#   A denial whose only violations are images that could not be checked
#   because of a transient failure (rate limit, timeout, registry down) is
#   {allowed: false, unavailable: true, ...}: the server answers it with 503
#   and Retry-After, so the apiserver retries it and does not cache it as a
#   denial (its defaultAllow decides if the failure lasts).
#
#   With no params: images must be pinned by digest (repo@digest or
#   repo:tag@digest) and not use "latest",
#   and come from a registry in registries.allow.
# related_resources:
#   - ref: https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/#imagepolicywebhook
# custom:
#   severity: high
package imagegate.review

import data.imagegate.lib

# data.imagegate.params and .registries are read by name: reading
# data.imagegate whole would include this package and recurse.
default params := {}

params := data.imagegate.params

default registries := []

registries := data.imagegate.registries

namespace := object.get(input.spec, "namespace", "")

images := [c.image | some c in input.spec.containers]

annotations := object.get(input.spec, "annotations", {})

# Namespace mode: exempt, audit or enforce.
mode := "exempt" if {
	exempt_match
} else := "audit" if {
	some pattern in settings.audit
	glob.match(pattern, [], namespace)
} else := "enforce"

exempt_match if {
	some pattern in settings.exempt
	glob.match(pattern, [], namespace)
}

# METADATA
# description: the namespace settings of params, with their defaults
# custom:
#   constant: true
settings := {
	"exempt": object.get(params, "exempt", []),
	"audit": object.get(params, "audit", []),
	"namespaces": object.get(params, "namespaces", []),
	"break_glass_annotation": object.get(object.get(params, "breakGlass", {}), "annotation", "alpha.image-policy.k8s.io/break-glass"),
	"break_glass_namespaces": object.get(object.get(params, "breakGlass", {}), "namespaces", []),
}

# Rule parameters: defaults, then the first matching namespace entry.
default_rules := {
	"pinning": {"allowUntagged": true},
	"registry": {},
}

# The registry rule falls back to registries.allow only when neither list is
# configured: allowedRepositoryPrefixes alone must not be widened to whole
# registries.
registry_defaults(p) := object.union({"allowedRegistries": registries}, p) if {
	not "allowedRegistries" in object.keys(p)
	not "allowedRepositoryPrefixes" in object.keys(p)
} else := p

# The plan of a namespace: the parameters of each rule that runs there (the
# defaults, then the namespace entry's, merged rule by rule), split by
# whether the rule needs facts and whether its parameters are valid. Plans
# depend on data only, never on input: they are marked constant, so the
# engine computes them once per policy load rather than once per review
# (opa test evaluates them as any rule). Rules with valid parameters are
# evaluated without checking the parameters again for every image; rules
# with invalid ones report the problems for every image.
#
# METADATA
# description: the plan of namespaces no namespace entry matches
# custom:
#   constant: true
default_plan := _plan({})

# METADATA
# description: the plan of each namespace entry, in order
# custom:
#   constant: true
entry_plans := [_plan(object.get(entry, "rules", {})) | some entry in object.get(params, "namespaces", [])]

_plan(namespace_rules) := {
	"rules": all,
	"checks": {name: rule_prepare(name, p) | some name, p in all; not name in fact_rules; _valid(name, p)},
	"fact_checks": {name: rule_prepare(name, p) | some name, p in all; name in fact_rules; _valid(name, p)},
	"invalid": {name: p | some name, p in all; not name in fact_rules; not _valid(name, p)},
	"invalid_fact": {name: p | some name, p in all; name in fact_rules; not _valid(name, p)},
	"needs_facts": count({name | some name, _ in all; name in fact_rules}) > 0,
} if {
	all := _rules(namespace_rules)
}

# object.union merges recursively: each rule's namespace parameters over its
# defaults.
_rules(namespace_rules) := {name: merged |
	some name, layered in object.union(object.union(default_rules, object.get(params, "rules", {})), namespace_rules)
	merged := with_defaults(name, layered)
	object.get(merged, "enabled", true) != false
}

_valid(name, p) if count(rule_problems(name, p)) == 0

# The first namespace entry whose names match the namespace.
namespace_entry := min({i |
	some i, entry in settings.namespaces
	some pattern in entry.names
	glob.match(pattern, [], namespace)
})

plan := entry_plans[namespace_entry] if {
	true
} else := default_plan

# rules are the parameters of each rule that runs in this namespace.
rules := plan.rules

with_defaults("registry", p) := registry_defaults(p)

with_defaults(name, p) := p if name != "registry"

fact_rules := {"age", "freshness", "signature", "attestation"}

needs_facts if plan.needs_facts

# Facts are fetched once, for every image at once, and only when a rule needs them.
facts := imagegate.facts(images) if needs_facts

else := {}

violations contains msg if {
	some image in images
	some name, p in plan.checks
	some msg in rule_checked(name, image, null, p)
}

violations contains msg if {
	needs_facts
	some image in images
	facts[image].ok
	some name, p in plan.fact_checks
	some msg in rule_checked(name, image, facts[image].facts, p)
}

violations contains msg if {
	some name, p in plan.invalid
	some image in images
	some msg in rule_violations(name, image, null, p)
}

violations contains msg if {
	some name, p in plan.invalid_fact
	some image in images
	facts[image].ok
	some msg in rule_violations(name, image, facts[image].facts, p)
}

# The images whose facts could not be read; transient_unchecked are those
# that failed for a reason that may clear (rate limit, timeout, registry
# down), not for a verdict (not found, refused by the allowlist).
violations contains msg if {
	needs_facts
	some image in images
	not facts[image].ok
	msg := unchecked_message(image)
}

transient_unchecked contains msg if {
	needs_facts
	some image in images
	not facts[image].ok
	object.get(facts[image], "transient", false) == true
	msg := unchecked_message(image)
}

unchecked_message(image) := sprintf("facts: could not check image %q: %s", [image, facts[image].error])

# The denial is only "could not look right now": no other violation, and every
# unchecked image failed transiently. The server answers it with a 503 (the
# apiserver retries it and does not cache it as a denial).
only_transient if {
	count(violations) > 0
	count(violations - transient_unchecked) == 0
}

# rule_checked skips the parameter checks: for parameters rule_problems
# accepts, as rule_prepare returns them.
rule_checked("pinning", image, f, p) := lib.pinning.checked(image, f, p)

rule_checked("registry", image, f, p) := lib.registry.checked(image, f, p)

rule_checked("naming", image, f, p) := lib.naming.checked(image, f, p)

rule_checked("age", image, f, p) := lib.age.checked(image, f, p)

rule_checked("freshness", image, f, p) := lib.freshness.checked(image, f, p)

rule_checked("signature", image, f, p) := lib.signature.checked(image, f, p)

rule_checked("attestation", image, f, p) := lib.attestation.checked(image, f, p)

rule_problems("pinning", p) := lib.pinning.problems(p)

rule_problems("registry", p) := lib.registry.problems(p)

rule_problems("naming", p) := lib.naming.problems(p)

rule_problems("age", p) := lib.age.problems(p)

rule_problems("freshness", p) := lib.freshness.problems(p)

rule_problems("signature", p) := lib.signature.problems(p)

rule_problems("attestation", p) := lib.attestation.problems(p)

rule_prepare("pinning", p) := lib.pinning.prepare(p)

rule_prepare("registry", p) := lib.registry.prepare(p)

rule_prepare("naming", p) := lib.naming.prepare(p)

rule_prepare("age", p) := lib.age.prepare(p)

rule_prepare("freshness", p) := lib.freshness.prepare(p)

rule_prepare("signature", p) := lib.signature.prepare(p)

rule_prepare("attestation", p) := lib.attestation.prepare(p)

rule_violations("pinning", image, f, p) := lib.pinning.violations(image, f, p)

rule_violations("registry", image, f, p) := lib.registry.violations(image, f, p)

rule_violations("naming", image, f, p) := lib.naming.violations(image, f, p)

rule_violations("age", image, f, p) := lib.age.violations(image, f, p)

rule_violations("freshness", image, f, p) := lib.freshness.violations(image, f, p)

rule_violations("signature", image, f, p) := lib.signature.violations(image, f, p)

rule_violations("attestation", image, f, p) := lib.attestation.violations(image, f, p)

# Break-glass: only where config permits it, always recorded.
break_glass_annotation := settings.break_glass_annotation

break_glass_requested if annotations[break_glass_annotation] == "true"

break_glass_permitted if {
	some pattern in settings.break_glass_namespaces
	glob.match(pattern, [], namespace)
}

break_glass if {
	break_glass_requested
	break_glass_permitted
}

# No image has a violation. (The engine answers this in Go first when the
# plan's rules all have Go twins, and evaluates the rules above only when
# that cannot say yes.)
no_violations if count(violations) == 0

sorted_violations := sort([v | some v in violations])

summary := concat("; ", sorted_violations)

# METADATA
# entrypoint: true
# description: '{allowed, reason, auditAnnotations} for the ImageReview in input.'
decision := {"allowed": true, "reason": sprintf("namespace %q is exempt from image policy", [namespace]), "auditAnnotations": {"mode": "exempt"}} if {
	mode == "exempt"
} else := {"allowed": true, "reason": "all images pass image policy", "auditAnnotations": {}} if {
	no_violations
	not break_glass_requested
} else := {"allowed": true, "reason": "all images pass image policy", "auditAnnotations": {"break-glass": "requested but not needed"}} if {
	no_violations
} else := {"allowed": true, "reason": sprintf("audit mode, would deny: %s", [summary]), "auditAnnotations": {"mode": "audit", "violations": summary}} if {
	mode == "audit"
} else := {"allowed": true, "reason": sprintf("break-glass: admitted despite: %s", [summary]), "auditAnnotations": {"break-glass": "true", "violations": summary}} if {
	break_glass
} else := {"allowed": false, "unavailable": true, "reason": sprintf("imagegate could not check the images right now: %s", [summary]), "auditAnnotations": {"violations": summary}} if {
	only_transient
} else := {"allowed": false, "reason": sprintf("imagegate denied: %s%s", [summary, break_glass_note]), "auditAnnotations": {"violations": summary}}

break_glass_note := sprintf(" (break-glass annotation %q is not permitted in namespace %q)", [break_glass_annotation, namespace]) if {
	break_glass_requested
	not break_glass_permitted
} else := ""
