package main

// render_templates: Go text/template, as Kurtosis renders them.

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
)

// renderTemplate renders one template with data (Go values from toGo).
// A template that keeps producing output stops at max bytes.
func renderTemplate(name, text string, data interface{}, max int64) (string, error) {
	t, err := template.New(name).Parse(text)
	if err != nil {
		return "", fmt.Errorf("template %s: %v", name, cleanTemplateError(err))
	}
	w := &cappedBuffer{max: max}
	if err := t.Execute(w, data); err != nil {
		if w.over {
			return "", fmt.Errorf("template %s renders more than max_file_bytes (%d)", name, max)
		}
		return "", fmt.Errorf("template %s: %v", name, cleanTemplateError(err))
	}
	return w.String(), nil
}

// cleanTemplateError drops the "template: NAME:" prefix Go adds.
func cleanTemplateError(err error) string {
	msg := err.Error()
	return strings.TrimPrefix(msg, "template: ")
}

type cappedBuffer struct {
	bytes.Buffer
	max  int64
	over bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if int64(c.Len()+len(p)) > c.max {
		c.over = true
		return 0, fmt.Errorf("output too large")
	}
	return c.Buffer.Write(p)
}
