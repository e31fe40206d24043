# install.mk: `make install` / `make uninstall`, included by the Makefile.
#
#   make install                      # into /usr/local
#   make install PREFIX=/opt/memscope # any prefix
#   make install DESTDIR=/tmp/stage PREFIX=/usr   # staged (packaging)
#
# Layout (LIBDIR etc. may be overridden; defaults shown):
#   $(BINDIR)/memscope                                the CLI; finds the library
#                                                     as ../lib/libmemscope.so
#   $(LIBDIR)/libmemscope.so, libmemscope.a           soname libmemscope.so
#   $(INCLUDEDIR)/memscope.h
#   $(LIBDIR)/pkgconfig/memscope.pc                   from mk/memscope.pc.in
#   $(LIBDIR)/cmake/memscope/memscope-config.cmake    from mk/memscope-config.cmake.in:
#   $(LIBDIR)/cmake/memscope/memscope-config-version.cmake   imported target memscope::memscope
#
# The CMake config locates the library and header relative to its own
# directory (paths computed here with realpath --relative-to), so an installed
# tree stays usable after being moved.  The pkg-config file writes libdir and
# includedir as ${prefix}/... when they lie under PREFIX.
# The CLI looks for ../lib/libmemscope.so next to itself: with a LIBDIR other
# than $(PREFIX)/lib (e.g. lib64) `memscope run` will not find the library.
# No ldconfig is run: the library has no versioned soname, and DESTDIR
# installs must not touch the host.

DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CMAKEDIR   ?= $(LIBDIR)/cmake/memscope
INSTALL    ?= install

# "$(PREFIX)/x" -> "${prefix}/x" for the .pc file; other paths stay absolute.
ms_pcpath = $(if $(filter $(PREFIX)/%,$(1)),$${prefix}/$(patsubst $(PREFIX)/%,%,$(1)),$(1))

install: lib $(BUILD)/memscope
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	    $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(CMAKEDIR)
	$(INSTALL) -m 755 $(BUILD)/memscope $(DESTDIR)$(BINDIR)/memscope
	$(INSTALL) -m 755 $(BUILD)/libmemscope.so $(DESTDIR)$(LIBDIR)/libmemscope.so
	$(INSTALL) -m 644 $(BUILD)/libmemscope.a $(DESTDIR)$(LIBDIR)/libmemscope.a
	$(INSTALL) -m 644 include/memscope.h $(DESTDIR)$(INCLUDEDIR)/memscope.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' \
	    -e 's|@LIBDIR@|$(call ms_pcpath,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(call ms_pcpath,$(INCLUDEDIR))|g' \
	    -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBS_PRIVATE@|$(strip $(LIBLIBS))|g' \
	    mk/memscope.pc.in > $(BUILD)/memscope.pc
	$(INSTALL) -m 644 $(BUILD)/memscope.pc $(DESTDIR)$(PKGCONFIGDIR)/memscope.pc
	rel_lib=$$(realpath -m --relative-to='$(CMAKEDIR)' '$(LIBDIR)') && \
	rel_inc=$$(realpath -m --relative-to='$(CMAKEDIR)' '$(INCLUDEDIR)') && \
	sed -e "s|@REL_LIBDIR@|$$rel_lib|g" \
	    -e "s|@REL_INCLUDEDIR@|$$rel_inc|g" \
	    -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@CMAKE_LIBS_PRIVATE@|$(subst $(eval) ,;,$(strip $(LIBLIBS)))|g' \
	    mk/memscope-config.cmake.in > $(BUILD)/memscope-config.cmake
	ptr=$$(echo __SIZEOF_POINTER__ | $(CC) -E -P - | tr -d ' \n') && \
	sed -e 's|@VERSION@|$(VERSION)|g' -e "s|@SIZEOF_VOID_P@|$$ptr|g" \
	    mk/memscope-config-version.cmake.in > $(BUILD)/memscope-config-version.cmake
	$(INSTALL) -m 644 $(BUILD)/memscope-config.cmake $(BUILD)/memscope-config-version.cmake \
	    $(DESTDIR)$(CMAKEDIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/memscope \
	    $(DESTDIR)$(LIBDIR)/libmemscope.so $(DESTDIR)$(LIBDIR)/libmemscope.a \
	    $(DESTDIR)$(INCLUDEDIR)/memscope.h \
	    $(DESTDIR)$(PKGCONFIGDIR)/memscope.pc \
	    $(DESTDIR)$(CMAKEDIR)/memscope-config.cmake \
	    $(DESTDIR)$(CMAKEDIR)/memscope-config-version.cmake
	-rmdir $(DESTDIR)$(CMAKEDIR) 2>/dev/null || true
