package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// secretReference matches a whole value of the form "<provider.key>".
var (
	secretReference = regexp.MustCompile(`^<([A-Za-z0-9_-]+)\.([A-Za-z0-9_.-]+)>$`)
	providerName    = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// Types of SecretProvider.
const (
	SecretProviderEnv       = "env"
	SecretProviderFile      = "file"
	SecretProviderDirectory = "directory"
)

func (v *validator) secretProviders(providers []SecretProvider) {
	seen := map[string]bool{}
	for i, p := range providers {
		path := index("secretProviders", i)
		switch {
		case p.Name == "":
			v.add(field(path, "name"), "required")
		case !providerName.MatchString(p.Name):
			v.add(field(path, "name"), fmt.Sprintf("want letters, digits, _ and -, got %s", quote(p.Name)))
		case seen[p.Name]:
			v.add(field(path, "name"), fmt.Sprintf("%s is named twice", quote(p.Name)))
		}
		seen[p.Name] = true
		switch p.Type {
		case SecretProviderEnv:
			if p.Path != "" {
				v.add(field(path, "path"), `only for type "file" or "directory"`)
			}
		case SecretProviderFile, SecretProviderDirectory:
			if p.Path == "" {
				v.add(field(path, "path"), "required")
			}
			if p.Prefix != "" {
				v.add(field(path, "prefix"), `only for type "env"`)
			}
		default:
			v.add(field(path, "type"), fmt.Sprintf(`want "env", "file" or "directory", got %s`, quote(p.Type)))
		}
	}
}

// loadSecretProviders decodes secretProviders ahead of the rest of the
// file, wherever it stands in it, so that secrets anywhere can refer to
// them; the main pass decodes it again and validates it.
func (d *decoder) loadSecretProviders(root *yaml.Node) {
	if root == nil || root.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "secretProviders" {
			continue
		}
		scratch := newDecoder(d.file)
		var providers []SecretProvider
		scratch.decode(root.Content[i+1], reflect.ValueOf(&providers).Elem(), "secretProviders")
		d.providers = map[string]SecretProvider{}
		for _, p := range providers {
			if _, twice := d.providers[p.Name]; !twice {
				d.providers[p.Name] = p
			}
		}
	}
}

// resolveReference reads the secret "<provider.key>" names. It returns a
// message, never the secret, when it cannot.
func (d *decoder) resolveReference(provider, key string) (value, message string) {
	p, ok := d.providers[provider]
	if !ok {
		return "", fmt.Sprintf("secret provider %s is not configured (secretProviders)", quote(provider))
	}
	switch p.Type {
	case SecretProviderEnv:
		name := p.Prefix + key
		value, ok := os.LookupEnv(name)
		if !ok {
			return "", fmt.Sprintf("secret %s: environment variable %s is not set", quote(provider+"."+key), name)
		}
		return value, ""
	case SecretProviderDirectory:
		if strings.Contains(key, "..") {
			return "", fmt.Sprintf("secret %s: a key naming a file may not contain ..", quote(provider+"."+key))
		}
		content, err := readSecretFile(filepath.Join(d.relative(p.Path), key))
		if err != nil {
			return "", fmt.Sprintf("secret %s: %v", quote(provider+"."+key), err)
		}
		return strings.TrimRight(content, "\r\n"), ""
	case SecretProviderFile:
		values, message := d.secretFile(p)
		if message != "" {
			return "", message
		}
		value, ok := values[key]
		if !ok {
			return "", fmt.Sprintf("secret %s: no key %s in %s", quote(provider+"."+key), quote(key), quote(p.Path))
		}
		return value, ""
	}
	return "", fmt.Sprintf("secret provider %s has no usable type", quote(provider))
}

func (d *decoder) relative(path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(d.directory, path)
}

// secretFile reads a provider's YAML file of key: value, once per load.
func (d *decoder) secretFile(p SecretProvider) (map[string]string, string) {
	if values, ok := d.secretFiles[p.Name]; ok {
		return values, ""
	}
	content, err := readSecretFile(d.relative(p.Path))
	if err != nil {
		return nil, fmt.Sprintf("secret provider %s: %v", quote(p.Name), err)
	}
	var values map[string]string
	if err := yaml.Unmarshal([]byte(content), &values); err != nil {
		// The parser's message may quote the file's content: say only where.
		return nil, fmt.Sprintf("secret provider %s: %s is not a YAML mapping of keys to strings", quote(p.Name), quote(p.Path))
	}
	if d.secretFiles == nil {
		d.secretFiles = map[string]map[string]string{}
	}
	d.secretFiles[p.Name] = values
	return values, ""
}
