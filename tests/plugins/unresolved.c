/* unresolved.c — a test plugin that calls a function no weir provides, so
 * loading it (with every symbol resolved at once) fails. */
#include <weir.h>

void weir_no_such_function(void);

static int unresolved_init(void)
{
    weir_no_such_function();
    return 0;
}

WEIR_PLUGIN(unresolved_init)
