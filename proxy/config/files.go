package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// CheckFiles reports the files a valid config names but that cannot be
// read: each filter's module.path (relative to baseDir, the config file's
// directory). Errors read "FILE:LINE: filters[i].module.path: reason", as
// Parse's do; data is the config's source (for lines).
func CheckFiles(name string, data []byte, c *Config, baseDir string) error {
	var errs Errors
	ix := newLineIndex(data)
	for i, f := range c.Filters {
		if f.Module.Path == "" {
			continue
		}
		p := f.Module.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		path := fmt.Sprintf("filters[%d].module.path", i)
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			errs = append(errs, FieldError{File: name, Line: ix.line(path), Path: path,
				Reason: fmt.Sprintf("filter %q: module file %s does not exist (a relative path is read from the config file's directory)", f.Name, p)})
		case err != nil:
			errs = append(errs, FieldError{File: name, Line: ix.line(path), Path: path, Reason: fmt.Sprintf("filter %q: %v", f.Name, err)})
		case fi.IsDir():
			errs = append(errs, FieldError{File: name, Line: ix.line(path), Path: path, Reason: fmt.Sprintf("filter %q: module %s is a directory, want a .wasm file", f.Name, p)})
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}
