package files

import (
	"mime"
	"net/http"
	"strings"
)

const (
	// sniffLen is how much of the content http.DetectContentType looks at.
	sniffLen = 512
	// octetStream is the type of content that is only ever saved, never
	// shown.
	octetStream = "application/octet-stream"
	// maxTypeLen bounds a stored content type (the column is varchar(255)).
	maxTypeLen = 255
)

// DetectType decides the content type of a file from its first bytes,
// with hint (the Content-Type the client sent) consulted only where
// sniffing can tell no more than a family: unknown binary data, a ZIP
// container (docx, xlsx, odt, apk, epub are all ZIPs) or plain text (csv,
// markdown, vCard). A hint never overrides what the bytes show, so a PNG
// sent as text/plain is image/png, and a hint of active content (HTML,
// SVG, script) is never taken.
func DetectType(head []byte, hint string) string {
	sniffed := http.DetectContentType(head[:min(len(head), sniffLen)])
	hmt, ok := usableHint(hint)
	if !ok {
		return sniffed
	}
	smt, sparams, err := mime.ParseMediaType(sniffed)
	if err != nil {
		return sniffed
	}
	var refined string
	switch {
	case smt == octetStream && !strings.HasPrefix(hmt, "text/"):
		refined = hmt
	case smt == "application/zip" && strings.HasPrefix(hmt, "application/"):
		refined = hmt
	case smt == "text/plain" && strings.HasPrefix(hmt, "text/"):
		// The charset is what the bytes showed, not what the client said.
		refined = mime.FormatMediaType(hmt, sparams)
	}
	if refined == "" || len(refined) > maxTypeLen {
		return sniffed
	}
	return refined
}

// usableHint returns the media type of a client's Content-Type when it can
// refine a sniffed type: well formed, specific, and not active content.
// Generic types and what HTTP clients send by default for any body
// (curl's application/x-www-form-urlencoded) say nothing about the file.
func usableHint(hint string) (string, bool) {
	if hint == "" || len(hint) > maxTypeLen {
		return "", false
	}
	mt, _, err := mime.ParseMediaType(hint)
	if err != nil || !strings.Contains(mt, "/") || mime.FormatMediaType(mt, nil) == "" {
		return "", false
	}
	switch {
	case mt == octetStream, mt == "application/x-www-form-urlencoded", mt == "text/plain",
		strings.HasPrefix(mt, "multipart/"), isActive(mt):
		return "", false
	}
	return mt, true
}

// isActive reports media types a browser would run rather than show or
// save: documents that can carry script (HTML, XHTML, SVG and XML in
// general, which may be XSLT-styled into HTML) and script itself. Served
// from our origin they would run with the user's session.
func isActive(mediaType string) bool {
	mt, _, err := mime.ParseMediaType(mediaType)
	if err != nil {
		// Unparseable: assume the worst.
		return true
	}
	switch mt {
	case "text/html", "text/xml", "application/xml", "text/xsl",
		"text/javascript", "application/javascript", "application/x-javascript",
		"text/ecmascript", "application/ecmascript", "text/jscript", "text/livescript",
		"application/x-shockwave-flash", "multipart/x-mixed-replace":
		return true
	}
	return strings.HasSuffix(mt, "+xml")
}

// servedType is the Content-Type a file's content is delivered with: its
// own, except that active content is delivered as opaque bytes.
func servedType(contentType string) string {
	if contentType == "" || isActive(contentType) {
		return octetStream
	}
	return contentType
}
