#!/bin/sh
# azd postprovision hook: generate the secret that signs webhook deliveries (Standard Webhooks, whsec_<base64>)
# in Key Vault, once, without the value ever appearing in a template, a parameter, an output or a log line.
#
# Provisioning writes a placeholder the app refuses to sign with; this hook replaces it with 32 random bytes
# (from a private temp file, never on a command line), asks the function app to re-read its Key Vault
# references, and records WEBHOOK_SECRET_IN_KEY_VAULT=true so later provisions leave the secret alone.
# Rotate: `azd env set WEBHOOK_SECRET_IN_KEY_VAULT false`, `azd provision` (receivers must accept both
# secrets for a while: Standard Webhooks allows several signatures; see docs/operations.md).
#
# Needs: Azure CLI signed in as a principal with Key Vault Secrets Officer on the vault (main.bicep grants
# it to AZURE_PRINCIPAL_ID), and openssl.
set -eu

if [ "${WEBHOOK_SECRET_IN_KEY_VAULT:-false}" = "true" ]; then
    echo "postprovision: the webhook secret is already in Key Vault; nothing to do."
    exit 0
fi

: "${AZURE_RESOURCE_GROUP:?run through azd (azd provision / azd up), which sets the outputs of main.bicep}"
: "${AZURE_FUNCTION_APP_NAME:?}" "${AZURE_KEY_VAULT_NAME:?}" "${AZURE_KEY_VAULT_WEBHOOK_SECRET_NAME:?}"

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT INT TERM
umask 077
secretfile="$workdir/secret"

printf 'whsec_%s' "$(openssl rand -base64 32)" >"$secretfile"
az keyvault secret set --vault-name "$AZURE_KEY_VAULT_NAME" --name "$AZURE_KEY_VAULT_WEBHOOK_SECRET_NAME" \
    --file "$secretfile" --encoding utf-8 --description text/plain --output none
echo "postprovision: generated the webhook signing secret in Key Vault $AZURE_KEY_VAULT_NAME."

# App Service caches Key Vault references for up to a day: have it read the new version now.
app_id=$(az functionapp show --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" --query id --output tsv)
az rest --method post --output none \
    --url "$app_id/config/configreferences/appsettings/refresh?api-version=2022-03-01"

azd env set WEBHOOK_SECRET_IN_KEY_VAULT true
