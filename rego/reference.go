package rego

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
)

// ParseReferenceBuiltin is the Go twin of the pure-Rego parser
// data.imagegate.lib.reference.parse. The engine evaluates the library's
// parse through it (see fastParse), because the Rego parser is most of the
// cost of a review; Gatekeeper templates and `opa test` keep the pure-Rego
// parser. FuzzParseReference and TestParseReferenceMatchesRego hold the two
// to the same answer, errors included.
const ParseReferenceBuiltin = "imagegate.parse_reference"

// referencePackage is the library package whose parse the engine replaces.
const referencePackage = "data.imagegate.lib.reference"

const maxReferenceLength = 1024

var (
	registryRe   = regexp.MustCompile(`^(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$`)
	portSuffixRe = regexp.MustCompile(`:[0-9]*$`)
	component    = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
	repositoryRe = regexp.MustCompile(fmt.Sprintf(`^%s(?:/%s)*$`, component, component))
	tagRe        = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestRe     = regexp.MustCompile(`^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$`)
)

// ParsedReference is what reference.parse returns.
type ParsedReference struct {
	Valid       bool   `json:"valid"`
	Error       string `json:"error"`
	Registry    string `json:"registry"`
	Repository  string `json:"repository"`
	Tag         string `json:"tag"`
	Digest      string `json:"digest"`
	ImplicitTag bool   `json:"implicitTag"`
}

// ParseReference parses image exactly as the Rego library's reference.parse
// does; rego/lib/reference/reference.rego documents the grammar and the
// normalisation.
func ParseReference(image string) ParsedReference {
	switch {
	case image == "":
		return ParsedReference{Error: "empty image reference"}
	case utf8.RuneCountInString(image) > maxReferenceLength:
		return ParsedReference{Error: fmt.Sprintf("image reference is %d characters, longer than %d", utf8.RuneCountInString(image), maxReferenceLength)}
	}
	p := splitReference(image)
	if msg := p.problem(); msg != "" {
		return ParsedReference{Error: msg}
	}
	return ParsedReference{Valid: true, Registry: p.registry, Repository: p.repository, Tag: p.tag, Digest: p.digest, ImplicitTag: p.implicitTag}
}

type splitRef struct {
	atCount                   int
	digest, tag               string
	hasTag, implicitTag       bool
	rawRegistry, registry     string
	rawRepository, repository string
}

// splitReference is reference.rego's _split: '@' before the digest, a ':'
// after the last '/' before the tag, a first component with '.' or ':' or
// "localhost" is the registry.
func splitReference(image string) splitRef {
	at := strings.Split(image, "@")
	p := splitRef{atCount: len(at), digest: strings.Join(at[1:], "@")}
	name := at[0]
	if parts := strings.Split(name, ":"); len(parts) > 1 && !strings.Contains(parts[len(parts)-1], "/") {
		name = strings.Join(parts[:len(parts)-1], ":")
		p.tag, p.hasTag = parts[len(parts)-1], true
	}
	p.implicitTag = p.atCount == 1 && !p.hasTag
	if p.implicitTag {
		p.tag = "latest"
	}
	p.rawRegistry, p.rawRepository = "docker.io", name
	if comps := strings.Split(name, "/"); len(comps) > 1 && isRegistry(comps[0]) {
		p.rawRegistry, p.rawRepository = comps[0], strings.Join(comps[1:], "/")
	}
	p.registry = normalizeRegistry(p.rawRegistry)
	p.repository = p.rawRepository
	if p.registry == "docker.io" && !strings.Contains(p.rawRepository, "/") {
		p.repository = "library/" + p.rawRepository
	}
	return p
}

func isRegistry(c string) bool {
	return c == "localhost" || strings.Contains(c, ".") || strings.Contains(c, ":")
}

func normalizeRegistry(host string) string {
	switch h := strings.ToLower(host); h {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	default:
		return h
	}
}

// problem is reference.rego's _problem: the first thing wrong, or "".
func (p splitRef) problem() string {
	switch {
	case p.atCount > 2:
		return "more than one '@'"
	case p.atCount == 2 && p.digest == "":
		return "empty digest after '@'"
	case p.hasTag && p.tag == "":
		return "empty tag after ':'"
	case p.rawRepository == "":
		return "no repository"
	case !registryRe.MatchString(p.registry) || utf8.RuneCountInString(portSuffixRe.ReplaceAllString(p.registry, "")) > 253:
		return fmt.Sprintf("registry %q is not a valid host or host:port", p.rawRegistry)
	case utf8.RuneCountInString(p.rawRepository) > 255:
		return fmt.Sprintf("repository %q is longer than 255 characters", p.rawRepository)
	case !repositoryRe.MatchString(p.rawRepository):
		return fmt.Sprintf("repository %q does not match the distribution grammar (lower-case letters, digits and single separators '.', '_', '__' or '-' in path components separated by single slashes)", p.rawRepository)
	case p.hasTag && !tagRe.MatchString(p.tag):
		return fmt.Sprintf("tag %q is not valid (up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-')", p.tag)
	case p.atCount == 2 && !digestRe.MatchString(p.digest):
		return fmt.Sprintf("digest %q is not valid (sha256:<64 hex>, sha384:<96 hex> or sha512:<128 hex>, lower-case)", p.digest)
	}
	return ""
}

// Term is the reference.parse object.
func (r ParsedReference) Term() *ast.Term {
	return ast.ObjectTerm(
		ast.Item(ast.InternedTerm("valid"), ast.InternedTerm(r.Valid)),
		ast.Item(ast.InternedTerm("error"), ast.StringTerm(r.Error)),
		ast.Item(ast.InternedTerm("registry"), ast.StringTerm(r.Registry)),
		ast.Item(ast.InternedTerm("repository"), ast.StringTerm(r.Repository)),
		ast.Item(ast.InternedTerm("tag"), ast.StringTerm(r.Tag)),
		ast.Item(ast.InternedTerm("digest"), ast.StringTerm(r.Digest)),
		ast.Item(ast.InternedTerm("implicitTag"), ast.InternedTerm(r.ImplicitTag)),
	)
}

func parseReferenceImpl(_ oparego.BuiltinContext, arg *ast.Term) (*ast.Term, error) {
	s, ok := arg.Value.(ast.String)
	if !ok {
		return ParsedReference{Error: "image reference must be a string"}.Term(), nil
	}
	return parsedCache.get(string(s)).term, nil
}

// parsed is a reference parsed once, with its Rego value (shared, never
// modified: evaluation does not change the values builtins return).
type parsed struct {
	ref  ParsedReference
	term *ast.Term
}

// parsedCache holds the parses of the images reviews name, which repeat from
// review to review (pinning, registry and the Rego library all parse each
// image). It is bounded: when full it starts again empty.
var parsedCache = &referenceCache{m: map[string]parsed{}}

const maxCachedReferences = 4096

type referenceCache struct {
	mu sync.RWMutex
	m  map[string]parsed
}

func (c *referenceCache) get(image string) parsed {
	c.mu.RLock()
	p, ok := c.m[image]
	c.mu.RUnlock()
	if ok {
		return p
	}
	ref := ParseReference(image)
	p = parsed{ref: ref, term: ref.Term()}
	c.mu.Lock()
	if len(c.m) >= maxCachedReferences {
		clear(c.m)
	}
	c.m[image] = p
	c.mu.Unlock()
	return p
}

func init() {
	oparego.RegisterBuiltin1(&oparego.Function{
		Name:        ParseReferenceBuiltin,
		Description: "imagegate.lib.reference.parse(image), in Go: {valid, error, registry, repository, tag, digest, implicitTag}",
		Decl:        types.NewFunction(types.Args(types.A), types.NewObject(nil, types.NewDynamicProperty(types.S, types.A))),
		Memoize:     true,
	}, parseReferenceImpl)
}

// fastParse replaces the rules named parse in the library's reference
// package with one that calls the Go parser. Everything else in the package
// (name, normalize_registry, …) stays as written.
func fastParse(m *ast.Module) error {
	if m.Package.Path.String() != referencePackage {
		return nil
	}
	kept := m.Rules[:0]
	replaced := false
	for _, r := range m.Rules {
		if r.Head.Name.String() == "parse" {
			replaced = true
			continue
		}
		kept = append(kept, r)
	}
	if !replaced {
		return nil
	}
	src := "package imagegate.lib.reference\n\nparse(image) := " + ParseReferenceBuiltin + "(image)\n"
	parsed, err := ast.ParseModuleWithOpts(m.Package.Location.File, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return err
	}
	rule := parsed.Rules[0]
	rule.Module = m
	m.Rules = append(kept, rule)
	return nil
}
