package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"
)

// File is a policy file as written:
//
//	presets: [baseline]
//	allow-bind: [/srv/data]
//	rules:
//	  - name: no-latest
//	    deny: 'request.action == "container.create" && container.image.endsWith(":latest")'
//	    message: "pin an image tag"
//	default: deny
type File struct {
	Presets   []string   `yaml:"presets"`
	AllowBind []string   `yaml:"allow-bind"`
	Rules     []RuleSpec `yaml:"rules"`
	// Default is "deny" (also when empty) or "allow".
	Default string `yaml:"default"`
}

// RuleSpec is one rule: exactly one of Allow and Deny, a CEL expression
// that decides whether the rule matches.
type RuleSpec struct {
	Name    string `yaml:"name"`
	Allow   string `yaml:"allow"`
	Deny    string `yaml:"deny"`
	Message string `yaml:"message"`
	// On is "request" (the default: AuthZReq) or "response" (AuthZRes).
	On string `yaml:"on"`
	// Line is where the rule starts in the file (0 for presets).
	Line int `yaml:"-"`
}

// ParseFile reads a policy file strictly: unknown keys are errors, so a
// misspelt "dney" does not silently drop a rule.
func ParseFile(data []byte) (*File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty policy file")
		}
		return nil, fmt.Errorf("policy file: %w", err)
	}
	// A second pass for the rules' line numbers.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err == nil && len(doc.Content) == 1 {
		root := doc.Content[0]
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value != "rules" {
				continue
			}
			for j, item := range root.Content[i+1].Content {
				if j < len(f.Rules) {
					f.Rules[j].Line = item.Line
				}
			}
		}
	}
	switch strings.ToLower(f.Default) {
	case "", "deny":
		f.Default = "deny"
	case "allow":
		f.Default = "allow"
	default:
		return nil, fmt.Errorf("policy file: default: %q, want deny or allow", f.Default)
	}
	return &f, nil
}
