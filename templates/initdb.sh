#
# Licensed to the Apache Software Foundation (ASF) under one or more
# contributor license agreements; and to You under the Apache License, Version 2.0.
#
# The init-couchdb job's script (helm/openwhisk/configMapFiles/initCouchDB/initdb.sh of
# openwhisk-deploy-kube), for a site without internet: the OpenWhisk tree with the ansible
# playbooks comes from the bundle's file server ({{FILESERVER_URL}}) instead of being cloned.
# Everything after that is what the chart's script does. The job runs it as
# `/bin/bash -c "set -e; . /task/initdb.sh"` in the ow-utils image (bash, curl, tar, ansible).

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

# Get OpenWhisk for the ansible playbooks needed to initialize CouchDB
bundle_fetch openwhisk
if [ -n "$OW_GIT_TAG_OPENWHISK" ] && [ "$OW_GIT_TAG_OPENWHISK" != "$BUNDLE_OPENWHISK_COMMIT" ]; then
    echo "NOTE: whisk.versions.openwhisk.gitTag is $OW_GIT_TAG_OPENWHISK; the bundle carries OpenWhisk $BUNDLE_OPENWHISK_COMMIT, which is used"
fi

# Install the secrets whisk.auth.guest and whisk.auth.system into the tree
# after removing the defaults inherited from the OpenWhisk sources
rm -f /openwhisk/ansible/files/auth.guest /openwhisk/ansible/files/auth.whisk.system
cp -f /etc/whisk-auth/guest /openwhisk/ansible/files/auth.guest
cp -f /etc/whisk-auth/system /openwhisk/ansible/files/auth.whisk.system

# Sanity check: all subjects must have unique keys
if cmp -s /openwhisk/ansible/files/auth.guest /openwhisk/ansible/files/auth.whisk.system; then
    echo "FATAL ERROR: unable to initialize the OpenWhisk subjects database."
    echo "Cannot use identical keys for whisk.auth.system and whisk.auth.guest."
    exit 1
fi

# The database settings every playbook below takes.
DB_ARGS=(-e db_prefix=$DB_PREFIX -e db_protocol=$DB_PROTOCOL -e db_host=$DB_HOST
         -e db_username=$COUCHDB_USER -e db_password=$COUCHDB_PASSWORD -e db_port=$DB_PORT
         -e openwhisk_home=/openwhisk)

# generate db_local.ini so the ansible jobs know how to access the database
pushd /openwhisk/ansible
    ansible-playbook -i environments/local setup.yml
    ansible-playbook -i environments/local couchdb.yml --tags ini "${DB_ARGS[@]}"
popd

# Wait for CouchDB to be available before starting to configure it
until $( curl --output /dev/null --silent $DB_PROTOCOL://$DB_HOST:$DB_PORT/_utils ); do
    echo "waiting for CouchDB to be available"
    sleep 2
done

# Enable single node mode (this also creates the system databases)
echo "Enabling single node cluster"
curl --silent -X POST -H "Content-Type: application/json" -u "$COUCHDB_USER:$COUCHDB_PASSWORD" $DB_PROTOCOL://$DB_HOST:$DB_PORT/_cluster_setup -d '{"action": "enable_single_node"}' || exit 1

# disable reduce limits on views
echo "Disabling reduce limits on views"
curl --silent -X PUT -u "$COUCHDB_USER:$COUCHDB_PASSWORD" $DB_PROTOCOL://$DB_HOST:$DB_PORT/_node/couchdb@$NODENAME/_config/query_server_config/reduce_limit -d '"false"' || exit 1

# initialize the DB tables for OpenWhisk
pushd /openwhisk/ansible
    ansible-playbook -i environments/local initdb.yml "${DB_ARGS[@]}"

    ansible-playbook -i environments/local wipe.yml "${DB_ARGS[@]}"
popd

echo "Creating ow_kube_couchdb_initialized_marker database"
curl --silent -X PUT -u "$COUCHDB_USER:$COUCHDB_PASSWORD" $DB_PROTOCOL://$DB_HOST:$DB_PORT/ow_kube_couchdb_initialized_marker || exit 1

echo "successfully initialized CouchDB for OpenWhisk"
