#!/bin/bash
# vfpool devstack plugin: stack.sh, unstack.sh and clean.sh call this file
# with the phase as arguments ("stack install", "unstack", ...).  See
# https://docs.openstack.org/devstack/latest/plugins.html

source $VFPOOL_DIR/devstack/lib/vfpool

if is_service_enabled vfpool-server vfpool-agent; then
    case "$1/$2" in
        stack/install)
            echo_summary "Installing vfpool"
            install_vfpool
            ;;
        stack/post-config)
            echo_summary "Configuring vfpool"
            configure_vfpool
            if is_service_enabled vfpool-server; then
                init_vfpool
            fi
            ;;
        stack/extra)
            echo_summary "Starting vfpool"
            start_vfpool
            if [[ "$VFPOOL_NOVA_DRIVER" == "True" ]] && \
                    is_service_enabled n-cpu; then
                echo_summary "Restarting nova-compute with vfpool's driver"
                start_vfpool_nova
            fi
            ;;
        unstack/*)
            stop_vfpool
            ;;
        clean/*)
            cleanup_vfpool
            ;;
    esac
fi
