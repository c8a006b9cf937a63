// kstatus prints what sigs.k8s.io/cli-utils' kstatus (what Flux's health
// checks and `wait: true` use) says of each object: one JSON line per
// object read from stdin (a JSON object, or a List of them).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var object map[string]interface{}
	// Whole numbers as int64, as the API machinery reads them (generation).
	if err := utiljson.Unmarshal(input, &object); err != nil {
		fail(err)
	}
	items := []interface{}{object}
	if listed, ok := object["items"].([]interface{}); ok {
		items = listed
	}
	encoder := json.NewEncoder(os.Stdout)
	for _, item := range items {
		content, ok := item.(map[string]interface{})
		if !ok {
			fail(fmt.Errorf("not an object: %v", item))
		}
		resource := &unstructured.Unstructured{Object: content}
		result, err := status.Compute(resource)
		if err != nil {
			fail(err)
		}
		if err := encoder.Encode(verdict{resource.GetName(), result.Status.String(), result.Message}); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(1)
}
