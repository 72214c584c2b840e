#
# Licensed to the Apache Software Foundation (ASF) under one or more
# contributor license agreements; and to You under the Apache License, Version 2.0.
#
# The install-packages job's script (helm/openwhisk/configMapFiles/installPackages/myTask.sh of
# openwhisk-deploy-kube), for a site without internet: OpenWhisk, openwhisk-catalog and the
# provider packages come from the bundle's file server ({{FILESERVER_URL}}) instead of git
# clones. The rest is what the chart's script does: route management, the catalog, and the
# alarm and kafka provider packages. The job runs it as `/bin/bash -c "set -e; . /task/myTask.sh"`
# in the ow-utils image (bash, curl, tar, wsk, wskdeploy, npm).
#
# What still reaches outside: the upstream install scripts run `npm install` (route management
# in OpenWhisk, the websocket package of the catalog, the alarms web action). npm goes to the
# registry given as the bundle value npm_registry when it is set (a registry inside the site);
# otherwise to npm's default registry. See docs/openwhisk.md.

export OPENWHISK_HOME=/openwhisk

export PROVIDER_DB_URL=$PROVIDER_DB_PROTOCOL://$PROVIDER_DB_USERNAME:$PROVIDER_DB_PASSWORD@$PROVIDER_DB_HOST:$PROVIDER_DB_PORT

BUNDLE_FILESERVER_URL="{{FILESERVER_URL}}"
BUNDLE_OPENWHISK_COMMIT="{{openwhisk_commit}}"

# Downloads NAME.tar.gz from the file server, checks it against the sha256 the server declares
# (X-Checksum-Sha256) and unpacks it in PARENT (default /), where it makes the folder NAME.
bundle_fetch() {
    local name="$1"
    local parent="${2:-/}"
    local url="$BUNDLE_FILESERVER_URL/$name.tar.gz"
    local dir="${parent%/}/$name"
    local tmp
    tmp=$(mktemp -d)
    local tries=0
    until curl -fsSL --connect-timeout 10 -D "$tmp/headers" -o "$tmp/$name.tar.gz" "$url"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 30 ]; then
            echo "FATAL ERROR: cannot download $url"
            rm -rf "$tmp"
            return 1
        fi
        echo "Can't download $url yet, trying again"
        sleep 2
    done
    local want
    want=$(tr -d '\r' < "$tmp/headers" | awk 'tolower($1) == "x-checksum-sha256:" { sum = $2 } END { print sum }')
    if [ -n "$want" ] && ! echo "$want  $tmp/$name.tar.gz" | sha256sum -c -; then
        echo "FATAL ERROR: $url does not match the sha256 the file server declares ($want)"
        rm -rf "$tmp"
        return 1
    fi
    rm -rf "$dir"
    mkdir -p "$parent"
    tar -xzf "$tmp/$name.tar.gz" -C "$parent"
    rm -rf "$tmp"
    test -d "$dir"
}

#####
# npm, for the `npm install` of the upstream install scripts
#####
{{#if npm_registry}}
export npm_config_registry="{{npm_registry}}"
echo "npm installs from {{npm_registry}}"
{{else}}
echo "WARNING: the bundle value npm_registry is empty: npm install goes to npm's default registry," \
     "which a site without internet cannot reach (route management, catalog websocket, alarms web action)"
{{/if}}
# Fail in seconds rather than minutes when the registry cannot be reached.
export npm_config_fetch_retries=2
export npm_config_fetch_retry_mintimeout=2000
export npm_config_fetch_retry_maxtimeout=10000
export npm_config_audit=false
export npm_config_fund=false
export npm_config_update_notifier=false

#####
# Install Route Mgmt Support
#####

# OpenWhisk for installRouteMgmt.sh and core/routemgmt
bundle_fetch openwhisk
if [ -n "$OW_GIT_TAG_OPENWHISK" ] && [ "$OW_GIT_TAG_OPENWHISK" != "$BUNDLE_OPENWHISK_COMMIT" ]; then
    echo "NOTE: whisk.versions.openwhisk.gitTag is $OW_GIT_TAG_OPENWHISK; the bundle carries OpenWhisk $BUNDLE_OPENWHISK_COMMIT, which is used"
fi
rm -f /openwhisk/ansible/files/auth.guest /openwhisk/ansible/files/auth.whisk.system

# Setup env for installRouteMgmt.sh
if [ "$WHISK_API_GATEWAY_USER" ]; then
    export GW_USER=$WHISK_API_GATEWAY_USER
else
    export GW_USER=' '
fi
if [ "$WHISK_API_GATEWAY_PASSWORD" ]; then
    export GW_PWD=$WHISK_API_GATEWAY_PASSWORD
else
    export GW_PWD=' '
fi
if [ "$WHISK_API_GATEWAY_HOST_V2" ]; then
    export GW_HOST_V2=$WHISK_API_GATEWAY_HOST_V2
else
    echo "Must provide a value for WHISK_API_GATEWAY_HOST_V2"
    exit 1
fi

pushd $OPENWHISK_HOME/ansible/roles/routemgmt/files
    # This operation has been unreliable in CI environments, so try multiple times before giving up.
    PASSED=false
    TRIES=0
    until $PASSED || [ $TRIES -eq 10 ]; do
        if ./installRouteMgmt.sh $WHISK_AUTH $WHISK_API_HOST_URL $WHISK_SYSTEM_NAMESPACE /usr/local/bin/wsk; then
            PASSED=true
            echo "Successfully deployed routemgmt package"
        else
            echo "Failed to deploy routemgmt package; will pause, uninstall, and try again"
            let TRIES=TRIES+1
            sleep 10
            ./uninstallRouteMgmt.sh $WHISK_AUTH $WHISK_API_HOST_URL $WHISK_SYSTEM_NAMESPACE /usr/local/bin/wsk;
        fi
    done
    if ! $PASSED; then
        echo "Giving up after 10 failed attempts to install the routemgmt package"
        exit 1
    fi
popd

#####
# Install the OpenWhisk Catalog
#####
bundle_fetch openwhisk-catalog

pushd /openwhisk-catalog/packages
    ./installCatalogUsingWskdeploy.sh $WHISK_AUTH $WHISK_API_HOST_URL /usr/local/bin/wsk || exit 1
popd


#####
# Install catalogs for each enabled Event Provider
#####

# installCatalog.sh of the providers wants $OPENWHISK_HOME/bin/wsk
mkdir -p $OPENWHISK_HOME/bin
cp /usr/local/bin/wsk $OPENWHISK_HOME/bin/wsk


#####
# Install the catalog for the Alarm provider
#####

if [ "$OW_INSTALL_ALARM_PROVIDER" == "yes" ]; then
    cd /
    bundle_fetch openwhisk-package-alarms

    pushd /openwhisk-package-alarms
        ./installCatalog.sh $WHISK_AUTH $WHISK_API_HOST_URL $WHISK_API_HOST_URL worker0 $PROVIDER_DB_URL $ALARM_DB_PREFIX || exit 1
    popd
fi


#####
# Install the catalog for the Kafka provider
#####

if [ "$OW_INSTALL_KAFKA_PROVIDER" == "yes" ]; then
    cd /
    bundle_fetch openwhisk-package-kafka

    pushd /openwhisk-package-kafka
        ./installKafka.sh $WHISK_AUTH $WHISK_API_HOST_URL $PROVIDER_DB_URL $KAFKA_DB_PREFIX $WHISK_API_HOST_URL || exit 1
        ./installCatalog.sh $WHISK_AUTH $WHISK_API_HOST_URL $PROVIDER_DB_URL $KAFKA_DB_PREFIX $WHISK_API_HOST_URL || exit 1
    popd
fi
