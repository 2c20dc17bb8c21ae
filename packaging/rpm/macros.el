# Macros of an Enterprise Linux build host, for building on Debian: mtasts.spec loads
# this file (%el_macros) and build.sh defines %dist/%rhel for the target. Debian's rpm has no
# macros.systemd, an empty %{dist} and %_sharedstatedir /usr/com.
%_unitdir /usr/lib/systemd/system
%_sharedstatedir /var/lib
%_localstatedir /var
%_sysconfdir /etc
# rpm 4.11 reads xz payloads, not zstd.
%_binary_payload w9.xzdio
%_source_payload w9.xzdio
# No /usr/lib/.build-id links (rpm 4.14 feature) and none of Debian's brp scripts.
%_build_id_links none
%__os_install_post %{nil}
%debug_package %{nil}

# The scriptlet macros in the shape systemd 219 (EL7) ships them.
%systemd_post() \
if [ $1 -eq 1 ] ; then \
        # Initial installation \
        systemctl preset %{?*} >/dev/null 2>&1 || : \
fi \
%{nil}

%systemd_preun() \
if [ $1 -eq 0 ] ; then \
        # Package removal, not upgrade \
        systemctl --no-reload disable %{?*} >/dev/null 2>&1 || : \
        systemctl stop %{?*} >/dev/null 2>&1 || : \
fi \
%{nil}

%systemd_postun_with_restart() \
systemctl daemon-reload >/dev/null 2>&1 || : \
if [ $1 -ge 1 ] ; then \
        # Package upgrade, not uninstall \
        systemctl try-restart %{?*} >/dev/null 2>&1 || : \
fi \
%{nil}
