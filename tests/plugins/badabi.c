/* badabi.c — a test plugin built for a stage ABI this weir does not have.
 * The symbols are defined by hand (not with WEIR_PLUGIN) to fake it. */
extern const unsigned weir_plugin_abi;
const unsigned weir_plugin_abi = 999;
int weir_plugin_init(void);
int weir_plugin_init(void) { return 0; }
