// Package static holds the embedded web UI: the landing page, the
// whiteboard of a room (its join URL), and the JavaScript client SDK.
package static

import "embed"

// FS holds the UI files, served under /static/ and at / and /r/{room}.
//
//go:embed *.html *.js *.css *.svg vendor
var FS embed.FS
