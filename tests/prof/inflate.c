/* inflate.c: two allocation sites in libraries with compressed DWARF
 * (gcc -gz), as distribution debug packages ship it: small_site's inflates
 * to a few KiB, big_site's (built -g3 over 150,000 macros) past the 4 MiB
 * that symbolize.c inflates for file:line.  test_profile.sh wants
 * small_site with its file:line, and big_site by name only. */
#include <stdio.h>

void small_site(void);
void big_site(void);

int main(void) {
    small_site();
    big_site();
    puts("done");
    return 0;
}
