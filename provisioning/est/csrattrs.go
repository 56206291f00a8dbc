package est

import (
	"context"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/http"
)

// CSR attributes (RFC 7030 §4.5): what the server wants in a CSR.
//
//	CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID
//	AttrOrOID ::= CHOICE { oid OBJECT IDENTIFIER, attribute Attribute }
//	Attribute ::= SEQUENCE { type OBJECT IDENTIFIER, values SET SIZE(1..MAX) OF ANY }

// Attribute is one CSR attribute the server asks for, with its values
// (raw ASN.1).
type Attribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue
}

// CSRAttrs is the parsed /csrattrs answer.
type CSRAttrs struct {
	OIDs       []asn1.ObjectIdentifier // bare OIDs (e.g. a signature algorithm, challengePassword)
	Attributes []Attribute
}

// Well-known OIDs in CSR attributes.
var (
	OIDChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	OIDExtensionRequest  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}
	OIDECPublicKey       = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	OIDP256              = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	OIDECDSAWithSHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
)

// CSRAttrs fetches GET /csrattrs. A server without attributes answers 204
// or 404 (RFC 7030 §4.5.2): both give empty CSRAttrs and no error.
func (c *Client) CSRAttrs(ctx context.Context) (*CSRAttrs, error) {
	body, err := c.do(ctx, "csrattrs", http.MethodGet, nil)
	var se *StatusError
	if errors.As(err, &se) && (se.StatusCode == http.StatusNotFound || se.StatusCode == http.StatusNoContent) {
		return &CSRAttrs{}, nil
	}
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return &CSRAttrs{}, nil
	}
	der, err := DecodeBase64(body)
	if err != nil {
		return nil, fmt.Errorf("est csrattrs: %w", err)
	}
	a, err := ParseCSRAttrs(der)
	if err != nil {
		return nil, fmt.Errorf("est csrattrs: %w", err)
	}
	return a, nil
}

// ParseCSRAttrs decodes a DER CsrAttrs sequence.
func ParseCSRAttrs(der []byte) (*CSRAttrs, error) {
	var items []asn1.RawValue
	rest, err := asn1.Unmarshal(der, &items)
	if err != nil {
		return nil, fmt.Errorf("parse csr attributes: %w", err)
	}
	if len(rest) > 0 {
		return nil, errTrailing(rest)
	}
	out := &CSRAttrs{}
	for _, it := range items {
		switch {
		case it.Class == asn1.ClassUniversal && it.Tag == asn1.TagOID:
			var oid asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(it.FullBytes, &oid); err != nil {
				return nil, fmt.Errorf("parse csr attribute oid: %w", err)
			}
			out.OIDs = append(out.OIDs, oid)
		case it.Class == asn1.ClassUniversal && it.Tag == asn1.TagSequence && it.IsCompound:
			var a struct {
				Type   asn1.ObjectIdentifier
				Values []asn1.RawValue `asn1:"set"`
			}
			rest, err := asn1.Unmarshal(it.FullBytes, &a)
			if err != nil {
				return nil, fmt.Errorf("parse csr attribute: %w", err)
			}
			if len(rest) > 0 || len(a.Values) == 0 {
				return nil, errors.New("parse csr attribute: empty value set or trailing data")
			}
			out.Attributes = append(out.Attributes, Attribute{Type: a.Type, Values: a.Values})
		default:
			return nil, fmt.Errorf("parse csr attributes: unexpected tag %d class %d", it.Tag, it.Class)
		}
	}
	return out, nil
}

// Wants reports whether the server asks for oid, bare or as an
// attribute type.
func (a *CSRAttrs) Wants(oid asn1.ObjectIdentifier) bool {
	for _, o := range a.OIDs {
		if o.Equal(oid) {
			return true
		}
	}
	for _, at := range a.Attributes {
		if at.Type.Equal(oid) {
			return true
		}
	}
	return false
}

// Curve returns the named curve the server asks for with an
// id-ecPublicKey attribute, if any.
func (a *CSRAttrs) Curve() (asn1.ObjectIdentifier, bool) {
	for _, at := range a.Attributes {
		if !at.Type.Equal(OIDECPublicKey) {
			continue
		}
		var curve asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(at.Values[0].FullBytes, &curve); err == nil {
			return curve, true
		}
	}
	return nil, false
}
