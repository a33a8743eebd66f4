// Package browsertest owns rendering a page in headless Chromium for
// tests: the DOM after scripts ran, and a screenshot checked to be a real
// picture. It skips the test when /usr/bin/chromium is missing. It must
// only be imported by tests and only load pages on 127.0.0.1.
package browsertest
