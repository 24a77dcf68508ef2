package registry

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// Credential is a username and password for one registry, each read from a
// file at every use so a rotated Kubernetes secret takes effect without a
// restart.
type Credential struct {
	Registry     string
	UsernameFile string
	PasswordFile string
}

// Keychain resolves credentials from a docker config.json (or a mounted
// kubernetes.io/dockerconfigjson secret) and from per-registry credential
// files. A credential is only ever returned for the exact registry it was
// written for: credentials never cross hosts. Registries without one are
// anonymous.
type Keychain struct {
	dockerConfig string
	creds        map[string]Credential
}

var _ authn.Keychain = (*Keychain)(nil)

// NewKeychain validates the files now, so a broken secret is a startup error
// rather than a string of "unauthorized" answers.
func NewKeychain(dockerConfig string, creds []Credential) (*Keychain, error) {
	k := &Keychain{dockerConfig: dockerConfig, creds: map[string]Credential{}}
	if dockerConfig != "" {
		if _, err := readDockerConfig(dockerConfig); err != nil {
			return nil, err
		}
	}
	for i, c := range creds {
		if c.Registry == "" || c.UsernameFile == "" || c.PasswordFile == "" {
			return nil, fmt.Errorf("registries.credentials[%d]: registry, usernameFile and passwordFile are required", i)
		}
		key := authKey(c.Registry)
		if _, dup := k.creds[key]; dup {
			return nil, fmt.Errorf("registries.credentials[%d]: registry %q listed twice", i, c.Registry)
		}
		if _, err := c.read(); err != nil {
			return nil, fmt.Errorf("registries.credentials[%d]: %w", i, err)
		}
		k.creds[key] = c
	}
	return k, nil
}

// Resolve implements authn.Keychain. go-containerregistry resolves once per
// repository and keeps the authenticator for the life of the client, so the
// one returned reads the files again at every use: a rotated secret takes
// effect on the next request.
func (k *Keychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	key := authKey(target.RegistryStr())
	if _, ok := k.creds[key]; !ok && k.dockerConfig == "" {
		return authn.Anonymous, nil
	}
	a := fileAuth{k: k, key: key}
	// Fail now on unreadable files, as before.
	if _, err := a.Authorization(); err != nil {
		return nil, err
	}
	return a, nil
}

// fileAuth is the credential for one registry, read when used.
type fileAuth struct {
	k   *Keychain
	key string
}

// Authorization returns the registry's credential, or an empty one (no
// Authorization header) when the docker config no longer lists it.
func (a fileAuth) Authorization() (*authn.AuthConfig, error) {
	if c, ok := a.k.creds[a.key]; ok {
		cfg, err := c.read()
		if err != nil {
			return nil, err
		}
		return &cfg, nil
	}
	auths, err := readDockerConfig(a.k.dockerConfig)
	if err != nil {
		return nil, err
	}
	cfg := auths[a.key]
	return &cfg, nil
}

func (c Credential) read() (authn.AuthConfig, error) {
	u, err := os.ReadFile(c.UsernameFile)
	if err != nil {
		return authn.AuthConfig{}, fmt.Errorf("credentials for %s: %w", c.Registry, err)
	}
	p, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return authn.AuthConfig{}, fmt.Errorf("credentials for %s: %w", c.Registry, err)
	}
	return authn.AuthConfig{Username: strings.TrimSpace(string(u)), Password: strings.TrimSpace(string(p))}, nil
}

// dockerConfigFile is the part of config.json imagegate reads. Credential
// helpers (credsStore, credHelpers) run external programs and are not used.
type dockerConfigFile struct {
	Auths map[string]authn.AuthConfig `json:"auths"`
}

func readDockerConfig(path string) (map[string]authn.AuthConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registries.dockerConfig: %w", err)
	}
	var f dockerConfigFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("registries.dockerConfig %s: %w", path, err)
	}
	out := make(map[string]authn.AuthConfig, len(f.Auths))
	for host, cfg := range f.Auths {
		out[authKey(host)] = cfg
	}
	return out, nil
}

// authKey normalises a config.json key ("https://index.docker.io/v1/",
// "ghcr.io", "localhost:5000") to the registry host[:port] it names, with
// Docker Hub's aliases folded together.
func authKey(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil {
			s = u.Host
		}
	}
	s, _, _ = strings.Cut(s, "/")
	return canonicalRegistry(s)
}
