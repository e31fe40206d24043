/* page.c: the live page served at "/", embedded from page.html.
 *
 * The page is one self-contained file (HTML, CSS and JS together: no
 * external script, style, font or image, so it works offline and asks
 * nothing of any host but this process).  It is kept as a real .html file,
 * readable and checkable on its own, and linked in verbatim with the
 * assembler's .incbin (paths are relative to the repository root, where
 * make runs; the Makefile names page.html as a prerequisite of page.o).
 * What the page does: every second it fetches /debug/memscope/series and
 * redraws the heap over time (in use, live, idle, released, RSS; heap
 * cycles and scavenges marked); every five seconds it fetches
 * /debug/memscope/profile and redraws the icicle graph of in-use bytes by
 * stack and the table of top sites (in use / allocated / at peak).
 */
#include "http.h"

__asm__(".section .rodata\n"
        ".global ms_http_page\n"
        ".hidden ms_http_page\n"
        ".type ms_http_page, @object\n"
        ".balign 16\n"
        "ms_http_page:\n"
        ".incbin \"src/http/page.html\"\n"
        "ms_http_page_end:\n"
        ".byte 0\n"
        ".global ms_http_page_len\n"
        ".hidden ms_http_page_len\n"
        ".type ms_http_page_len, @object\n"
        ".balign 8\n"
        "ms_http_page_len:\n"
        ".quad ms_http_page_end - ms_http_page\n"
        ".previous\n");
