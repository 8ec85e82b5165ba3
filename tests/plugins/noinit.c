/* noinit.c — a test plugin that is not one: it records a stage ABI but
 * exports no weir_plugin_init. */
#include <weir.h>

__attribute__((visibility("default"))) const unsigned weir_plugin_abi = WEIR_ABI_VERSION;
