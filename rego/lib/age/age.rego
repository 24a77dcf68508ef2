# METADATA
# title: Image age
# description: |
#   violations(image, facts, params) refuses images built more than maxAgeDays
#   ago, from the image config's created time (facts config.created, RFC 3339).
#   For an index every platform's config is checked and each message names the
#   platform (os/architecture[/variant]); children that are not images (no
#   config) are skipped.
#
#   - A config without created is a violation: the age cannot be known.
#   - 1970-01-01 (SOURCE_DATE_EPOCH=0, ko, Nix, Bazel) and 1980-01-01 (the
#     ZIP epoch, Cloud Native Buildpacks) are the fixed timestamps of
#     reproducible builds: refused with a message saying so when
#     reproducibleBuilds is "deny" (the default), not age-checked when "allow".
#     0001-01-01 (Go's zero time) counts as no created time.
#   - A created time more than a day in the future is a violation: it would
#     make any image look fresh.
#
#   created is written by whoever built the image; it is only as trustworthy
#   as the build. Pair this rule with signature or attestation rules.
#   The current time is time.now_ns(). Without facts (null) every image is a
#   violation.
# related_resources:
#   - ref: https://github.com/opencontainers/image-spec/blob/main/config.md#properties
#     description: OCI image config, created
#   - ref: https://reproducible-builds.org/docs/source-date-epoch/
#     description: SOURCE_DATE_EPOCH
# custom:
#   severity: medium
#   parameters:
#     type: object
#     required: [maxAgeDays]
#     properties:
#       maxAgeDays: {type: number, minimum: 0, description: 'oldest acceptable image, in days since config.created'}
#       reproducibleBuilds:
#         type: string
#         enum: [allow, deny]
#         default: deny
#         description: what to do with the fixed timestamps of reproducible builds (1970-01-01, 1980-01-01)
package imagegate.lib.age

_ns_per_day := ((24 * 60) * 60) * 1000000000

_reproducible_dates := {[1970, 1, 1], [1980, 1, 1]}

_rfc3339 := `^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$`

# violations(image, facts, params) is the set of age messages for image.
violations(image, facts, params) := msgs if {
	p := _params(params)
	msgs := _violations(image, facts, p)
}

# problems(params) is the set of what is wrong with params: empty when the
# parameters are valid.
problems(params) := _problems(_params(params))

# prepare(params) is the form of params checked takes.
prepare(params) := _params(params)

# checked(image, facts, prepared) is violations(image, facts, params) for
# prepared := prepare(params) of parameters problems accepts: it skips the
# parameter checks, which a caller evaluating many images makes once (the
# bundled ImageReview policy).
checked(image, facts, prepared) := _checked(image, facts, prepared)

_params(params) := params if {
	is_object(params)
} else := {}

_problems(p) := {"maxAgeDays is required (a number of days)"} if {
	object.get(p, "maxAgeDays", null) == null
} else := {"maxAgeDays must be a number of days, 0 or more"} if {
	not _non_negative(p.maxAgeDays)
} else := {sprintf("reproducibleBuilds must be \"allow\" or \"deny\", not %s", [_show(p.reproducibleBuilds)])} if {
	not _mode(p) in {"allow", "deny"}
} else := set()

_mode(p) := object.get(p, "reproducibleBuilds", "deny") if {
	object.get(p, "reproducibleBuilds", null) != null
} else := "deny"

_non_negative(x) if {
	is_number(x)
	x >= 0
}

_violations(image, facts, p) := {sprintf("age: image %q cannot be checked: %s; fix the age parameters", [image, problem]) |
	some problem in _problems(p)
} if {
	count(_problems(p)) > 0
} else := _checked(image, facts, p)

_checked(image, facts, p) := {sprintf("age: image %q has no facts, so its age cannot be checked", [image])} if {
	not is_object(facts)
} else := {sprintf("age: image %q has no image config to read its creation time from; use an image built for a platform", [image])} if {
	count(_configs(facts)) == 0
} else := {msg |
	some c in _configs(facts)
	some msg in _config_violations(_who(image, c.platform), c.config, p)
}

# _configs are the image configs to check, each with its platform label ("" for
# a single-platform image).
_configs(facts) := [{"platform": _platform(pl), "config": pl.config} |
	some pl in facts.platforms
	is_object(object.get(pl, "config", null))
] if {
	count(object.get(facts, "platforms", [])) > 0
} else := [{"platform": "", "config": facts.config}] if {
	is_object(object.get(facts, "config", null))
} else := []

_platform(pl) := concat("/", [x | some x in [object.get(pl, "os", ""), object.get(pl, "architecture", ""), object.get(pl, "variant", "")]; x != ""])

_who(image, "") := sprintf("image %q", [image])

_who(image, platform) := sprintf("image %q platform %s", [image, platform]) if platform != ""

_config_violations(who, config, p) := {sprintf("age: %s has no creation time (config.created is empty), so its age cannot be checked; rebuild it with a tool that records one", [who])} if {
	_no_created(object.get(config, "created", ""))
} else := {sprintf("age: %s has creation time %q, which is not an RFC 3339 time between 1678 and 2262; rebuild it with a tool that records one", [who, config.created])} if {
	not _created_ns(config.created)
} else := _created_violations(who, config.created, _created_ns(config.created), p)

_no_created(created) if not is_string(created)

_no_created("")

_no_created(created) if startswith(created, "0001-01-01")

_created_ns(created) := ns if {
	regex.match(_rfc3339, created)
	ns := time.parse_rfc3339_ns(created)
}

_created_violations(who, created, ns, p) := set() if {
	_reproducible(ns)
	_mode(p) == "allow"
} else := {sprintf("age: %s has creation time %s, the fixed timestamp of a reproducible build (SOURCE_DATE_EPOCH), so its real age is unknown; set reproducibleBuilds to \"allow\" to accept such images, or rebuild it with a real creation time", [who, created])} if {
	_reproducible(ns)
} else := {sprintf("age: %s has creation time %s, in the future; a wrong build clock makes its age meaningless, rebuild it", [who, created])} if {
	ns > time.now_ns() + _ns_per_day
} else := {sprintf("age: %s was created %s, %d days ago, more than maxAgeDays %v; rebuild it on current base images", [who, created, floor((time.now_ns() - ns) / _ns_per_day), p.maxAgeDays])} if {
	time.now_ns() - ns > p.maxAgeDays * _ns_per_day
} else := set()

_reproducible(ns) if time.date([ns, "UTC"]) in _reproducible_dates

# _show writes a parameter value for messages: strings quoted, others as JSON.
_show(x) := sprintf("%q", [x]) if {
	is_string(x)
} else := sprintf("%v", [x])
