package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ClaimMap names the token claims roomcast reads its facts from. An
// identity provider often cannot issue a claim named "rooms" (Auth0 wants
// custom claims namespaced by a URL, Keycloak names them in a mapper), so
// each may be read from another claim. A name is taken literally: a URL is
// one claim's name, never a path into nested claims. Zero value fields
// mean the claim of the same name.
type ClaimMap struct {
	Sub   string
	Name  string
	Meta  string
	Rooms string
	Read  string
}

func (m ClaimMap) withDefaults() ClaimMap {
	def := func(v *string, name string) {
		if *v == "" {
			*v = name
		}
	}
	def(&m.Sub, "sub")
	def(&m.Name, "name")
	def(&m.Meta, "meta")
	def(&m.Rooms, "rooms")
	def(&m.Read, "read")
	return m
}

// ParseClaimMap reads "key:claim,key:claim" (ROOMCAST_JWT_CLAIMS), where
// key is sub, name, meta, rooms or read and claim the name of the token's
// claim to read it from (everything after the first colon, so a URL is
// fine). Empty is the zero ClaimMap.
func ParseClaimMap(s string) (ClaimMap, error) {
	var m ClaimMap
	seen := map[string]bool{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		key, claim, ok := strings.Cut(pair, ":")
		key, claim = strings.TrimSpace(key), strings.TrimSpace(claim)
		if !ok || claim == "" {
			return ClaimMap{}, fmt.Errorf("%q is not key:claim", pair)
		}
		if seen[key] {
			return ClaimMap{}, fmt.Errorf("%q is mapped twice", key)
		}
		seen[key] = true
		switch key {
		case "sub":
			m.Sub = claim
		case "name":
			m.Name = claim
		case "meta":
			m.Meta = claim
		case "rooms":
			m.Rooms = claim
		case "read":
			m.Read = claim
		default:
			return ClaimMap{}, fmt.Errorf("unknown key %q (sub, name, meta, rooms or read)", key)
		}
	}
	return m, nil
}

// read turns a verified payload into Claims. m has its defaults.
func (m ClaimMap) read(raw map[string]json.RawMessage) (*Claims, error) {
	c := &Claims{Meta: json.RawMessage("{}")}
	var err error
	if c.Subject, err = stringClaim(raw, m.Sub); err != nil {
		return nil, err
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%s claim required", m.Sub)
	}
	if c.Name, err = stringClaim(raw, m.Name); err != nil {
		return nil, err
	}
	if c.Name == "" {
		c.Name = c.Subject
	}
	if c.Rooms, err = listClaim(raw, m.Rooms); err != nil {
		return nil, err
	}
	if c.Read, err = listClaim(raw, m.Read); err != nil {
		return nil, err
	}
	if meta := raw[m.Meta]; len(meta) > 0 && string(meta) != "null" {
		if len(meta) > MaxMetaBytes {
			return nil, fmt.Errorf("%s claim over 1 KiB", m.Meta)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(meta, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("%s claim must be an object", m.Meta)
		}
		c.Meta = append(json.RawMessage(nil), meta...)
	}
	return c, nil
}

// stringClaim reads a string claim; absent or null is "".
func stringClaim(raw map[string]json.RawMessage, name string) (string, error) {
	v, ok := raw[name]
	if !ok || string(v) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%s claim must be a string", name)
	}
	return s, nil
}

// listClaim reads a list of room names and prefixes: nil when absent (or
// null), a JSON array of strings, or one string (a provider's single-valued
// claim) as a list of one.
func listClaim(raw map[string]json.RawMessage, name string) ([]string, error) {
	v, ok := raw[name]
	if !ok || string(v) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(v, &one); err == nil {
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(v, &list); err != nil {
		return nil, errors.New(name + " claim must be an array of room names")
	}
	if list == nil {
		list = []string{}
	}
	return list, nil
}
