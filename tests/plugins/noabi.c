/* noabi.c — a test plugin without weir_plugin_abi (an init alone, as a
 * hand-written plugin might have): weir cannot tell what it was built for. */
int weir_plugin_init(void);
int weir_plugin_init(void) { return 0; }
