package k8simagegateage

import data.lib.imagegate.age
import data.lib.imagegate.gatekeeper.externaldata

# Images imagegate could not look at are violations (fail closed).
violation contains {"msg": msg, "details": {"image": image}} if {
	some image in externaldata.unchecked
	msg := externaldata.problem("age", image)
}

violation contains {"msg": msg, "details": {"image": image}} if {
	some image, facts in externaldata.facts
	some msg in age.violations(image, facts, input.parameters)
}
