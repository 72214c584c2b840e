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
# The upstream install scripts run `npm install` (route management in OpenWhisk, the websocket
# package of the catalog, the alarms web action). Their dependencies come with the bundle: the
# npm items of bundle.yml installed them at prepare, and each folder's node_modules and
# package-lock.json are unpacked here before the scripts run, so npm finds everything present and
# fetches nothing. npm_registry (a registry inside the site) is an optional fallback. See
# docs/openwhisk.md.

export OPENWHISK_HOME=/openwhisk

export PROVIDER_DB_URL=$PROVIDER_DB_PROTOCOL://$PROVIDER_DB_USERNAME:$PROVIDER_DB_PASSWORD@$PROVIDER_DB_HOST:$PROVIDER_DB_PORT

BUNDLE_FILESERVER_URL="{{FILESERVER_URL}}"
BUNDLE_OPENWHISK_COMMIT="{{openwhisk_commit}}"

# Downloads FILE (a path under the bundle's files/) from the file server into the folder DEST,
# checked against the sha256 the server declares (X-Checksum-Sha256).
bundle_download() {
    local file="$1"
    local dest="$2"
    local url="$BUNDLE_FILESERVER_URL/$file"
    local out="$dest/${file##*/}"
    local tries=0
    until curl -fsSL --connect-timeout 10 -D "$dest/headers" -o "$out" "$url"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 30 ]; then
            echo "FATAL ERROR: cannot download $url"
            return 1
        fi
        echo "Can't download $url yet, trying again"
        sleep 2
    done
    local want
    want=$(tr -d '\r' < "$dest/headers" | awk 'tolower($1) == "x-checksum-sha256:" { sum = $2 } END { print sum }')
    if [ -n "$want" ] && ! echo "$want  $out" | sha256sum -c -; then
        echo "FATAL ERROR: $url does not match the sha256 the file server declares ($want)"
        return 1
    fi
}

# Downloads FILE (a .tar.gz) and unpacks it into the folder INTO, beside what is there; when
# REPLACE is given, that folder is removed first (once the download is whole and checked).
bundle_unpack() {
    local file="$1"
    local into="$2"
    local replace="${3:-}"
    local tmp
    tmp=$(mktemp -d)
    if ! bundle_download "$file" "$tmp"; then
        rm -rf "$tmp"
        return 1
    fi
    if [ -n "$replace" ]; then
        rm -rf "$replace"
    fi
    mkdir -p "$into"
    tar -xzf "$tmp/${file##*/}" -C "$into"
    rm -rf "$tmp"
}

# Downloads NAME.tar.gz and unpacks it in PARENT (default /), where it makes the folder NAME
# (replacing an earlier one).
bundle_fetch() {
    local name="$1"
    local parent="${2:-/}"
    local dir="${parent%/}/$name"
    bundle_unpack "$name.tar.gz" "$parent" "$dir" && test -d "$dir"
}

#####
# npm, for the `npm install` of the upstream install scripts: every dependency they need is
# unpacked below (bundle_unpack) before they run.
#####
{{#if npm_registry}}
# The fallback: a registry inside the site, for anything npm finds missing.
export npm_config_registry="{{npm_registry}}"
echo "npm dependencies come with the bundle; npm falls back to {{npm_registry}}"
{{else}}
# No registry to fall back to: npm must not try one (it would wait for the network and retry).
export npm_config_offline=true
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
# Route management's npm dependencies (core/routemgmt/{getApi,createApi,deleteApi}: lodash, request)
bundle_unpack routemgmt-node_modules.tar.gz /openwhisk

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
# The websocket package's npm dependencies (packages/websocket: ws)
bundle_unpack catalog-node_modules.tar.gz /openwhisk-catalog

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
    # The alarms web action's npm dependencies (action/, from alarmWeb_package.json)
    bundle_unpack alarms-node_modules.tar.gz /openwhisk-package-alarms

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
