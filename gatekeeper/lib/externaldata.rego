# METADATA
# title: imagegate facts through Gatekeeper external data
# description: |
#   Asks the imagegate-facts Provider once per review, with every image of the
#   object (lib.imagegate.gatekeeper.pods.images) as keys, and sorts the answer
#   into facts (image → facts object) and unchecked images, which are
#   violations: "could not look" is never "looked and found nothing".
#
#   What external_data returns: {responses: [[key, value]…], errors: [[key,
#   error]…], status_code, system_error}. The request failed as a whole when
#   system_error is set or status_code is neither 200 nor 0 (0: every key came
#   from Gatekeeper's response cache); on a transport failure (imagegate down,
#   timeout, TLS) responses and errors are null and status_code is 500. Then
#   no image is checked and each is reported with the status and the error.
#   Otherwise an image with a per-key error (a stable code such as
#   not_found, registry_not_allowed, invalid_reference, unauthorized) is
#   reported with that error, and one that got no answer is reported too.
package lib.imagegate.gatekeeper.externaldata

import data.lib.imagegate.gatekeeper.pods

# provider is the Provider imagegate's facts are asked from.
provider := "imagegate-facts"

# response is imagegate's answer for every image of the object, asked once.
response := external_data({"provider": provider, "keys": pods.images}) if {
	count(pods.images) > 0
}

_status := object.get(response, "status_code", 0)

_system_error := object.get(response, "system_error", "")

# failed holds when the request as a whole failed.
failed if {
	is_string(_system_error)
	_system_error != ""
}

failed if not _status in {0, 200}

_pairs(field) := [p |
	some p in _list(object.get(response, field, []))
	is_array(p)
	count(p) == 2
]

_list(x) := x if {
	is_array(x)
} else := []

_values(image) := [v | some [k, v] in _pairs("responses"); k == image]

_errors(image) := [e | some [k, e] in _pairs("errors"); k == image]

# facts maps each image imagegate answered (with no per-key error) to its
# facts; empty when the request failed.
facts := {image: values[0] |
	not failed
	some image in pods.images
	count(_errors(image)) == 0
	values := _values(image)
	count(values) > 0
}

# unchecked are the images without facts.
unchecked := {image | some image in pods.images; not image in object.keys(facts)}

# problem(rule, image) says why an unchecked image could not be checked.
problem(rule, image) := sprintf("%s: image %q could not be checked: imagegate-facts: %s", [rule, image, errors[0]]) if {
	errors := _errors(image)
	count(errors) > 0
} else := sprintf("%s: image %q could not be checked: the imagegate-facts request failed (HTTP %d): %s; admission fails closed until imagegate answers", [rule, image, _status, _reason]) if {
	failed
} else := sprintf("%s: image %q could not be checked: imagegate-facts returned no answer for it", [rule, image])

_reason := _system_error if {
	is_string(_system_error)
	_system_error != ""
} else := "no system error given"
