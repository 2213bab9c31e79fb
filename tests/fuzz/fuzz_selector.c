/* libFuzzer target: series selectors, durations and the test-series
 * notation, the small parsers that read what people type. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "config.h"
#include "ruletest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bus_selector sel;
    struct vigil_err err = {0};
    char *text = malloc(size + 1);
    double values[256];
    char msg[128];
    int64_t ms;
    uint64_t bytes;

    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    bus_selector_parse(text, &sel, &err);
    cfg_parse_duration_ms(text, &ms);
    cfg_parse_bytes(text, &bytes);
    rtest_parse_series(text, values, 256, msg, sizeof(msg));
    free(text);
    return 0;
}
