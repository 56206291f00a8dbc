package est

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// OIDs of CMS content types (RFC 5652).
var (
	oidData       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
)

// contentInfo is CMS ContentInfo.
type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}

// signedData is CMS SignedData as used by certs-only messages: no
// signers, no content, the certificates in [0] IMPLICIT.
type signedData struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	EncapContentInfo encapContent
	Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	CRLs             asn1.RawValue `asn1:"optional,tag:1"`
	SignerInfos      asn1.RawValue
}

type encapContent struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"optional,explicit,tag:0"`
}

// maxBody bounds what the client reads from an EST response.
const maxBody = 1 << 20

// ParseCertsOnly decodes a DER CMS certs-only message (RFC 7030 §4.1.3,
// "application/pkcs7-mime; smime-type=certs-only") into its certificates.
func ParseCertsOnly(der []byte) ([]*x509.Certificate, error) {
	var ci contentInfo
	rest, err := asn1.Unmarshal(der, &ci)
	if err != nil {
		return nil, fmt.Errorf("parse pkcs7: %w", err)
	}
	if len(rest) != 0 {
		return nil, errors.New("parse pkcs7: trailing data")
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, fmt.Errorf("parse pkcs7: content type %v is not signedData", ci.ContentType)
	}
	var sd signedData
	if rest, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("parse pkcs7 signedData: %w", errors.Join(err, errTrailing(rest)))
	}
	if len(sd.Certificates.Bytes) == 0 {
		return nil, errors.New("parse pkcs7: no certificates")
	}
	certs, err := x509.ParseCertificates(sd.Certificates.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse pkcs7 certificates: %w", err)
	}
	return certs, nil
}

func errTrailing(rest []byte) error {
	if len(rest) != 0 {
		return errors.New("trailing data")
	}
	return nil
}

// MarshalCertsOnly encodes certs as a DER CMS certs-only message.
func MarshalCertsOnly(certs []*x509.Certificate) ([]byte, error) {
	if len(certs) == 0 {
		return nil, errors.New("marshal pkcs7: no certificates")
	}
	var raw []byte
	for _, c := range certs {
		raw = append(raw, c.Raw...)
	}
	emptySet := asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true}
	sd, err := asn1.Marshal(signedData{
		Version:          1,
		DigestAlgorithms: emptySet,
		EncapContentInfo: encapContent{ContentType: oidData},
		Certificates:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: raw},
		SignerInfos:      emptySet,
	})
	if err != nil {
		return nil, fmt.Errorf("marshal pkcs7 signedData: %w", err)
	}
	out, err := asn1.Marshal(contentInfo{
		ContentType: oidSignedData,
		Content:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: sd},
	})
	if err != nil {
		return nil, fmt.Errorf("marshal pkcs7: %w", err)
	}
	return out, nil
}

// DecodeBase64 decodes an EST body: standard base64, line breaks and
// spaces allowed (RFC 8951: always base64, whatever
// Content-Transfer-Encoding says).
func DecodeBase64(body []byte) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, string(body))
	der, err := base64.StdEncoding.DecodeString(clean)
	if err != nil {
		return nil, fmt.Errorf("decode base64 body: %w", err)
	}
	return der, nil
}

// EncodeBase64 encodes der as base64 wrapped at 64 columns.
func EncodeBase64(der []byte) []byte {
	s := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64])
		b.WriteString("\r\n")
		s = s[64:]
	}
	b.WriteString(s)
	b.WriteString("\r\n")
	return []byte(b.String())
}

// ParseCertsOnlyBase64 is DecodeBase64 followed by ParseCertsOnly.
func ParseCertsOnlyBase64(body []byte) ([]*x509.Certificate, error) {
	der, err := DecodeBase64(body)
	if err != nil {
		return nil, err
	}
	return ParseCertsOnly(der)
}
