// Application Gateway v2 (WAF) in front of the function app: HTTPS only with a certificate from Key Vault
// and a backend request timeout from a parameter. It adds no credential: Application Gateway cannot read a
// secret for a header, and a key written into a rewrite rule is plain text to every Reader. Clients send
// their own function key (x-functions-key, one named key per client); the function app accepts traffic
// from this gateway's subnet only, and the WAF keeps GET /api/health (queue depths, job counts) internal.

@description('Required. Application Gateway name.')
param name string

@description('Required. Azure region.')
param location string

@description('Optional. Tags for the resources.')
param tags object = {}

@description('Required. Resource id of the gateway\'s own subnet (modules/network.bicep).')
param subnetResourceId string

@description('Required. Public IP address name.')
param publicIpName string

@description('Required. WAF policy name (letters, digits, hyphens, underscores).')
param wafPolicyName string

@description('Required. DNS label of the public IP: the gateway answers on https://<label>.<region>.cloudapp.azure.com.')
param dnsLabel string

@description('Required. Resource id of the user-assigned identity that may read the certificate from Key Vault (Key Vault Secrets User).')
param identityResourceId string

@description('Required. Key Vault secret URI of the TLS certificate for the public host name: the vault\'s URI followed by secrets/<name>. Required: without it the deployment stops here with this parameter\'s name instead of an opaque gateway error.')
@minLength(1)
param certificateSecretUri string

@description('Required. Default host name of the function app.')
param functionAppHostName string

@description('Optional. Seconds the gateway waits for the function app to respond (request timeout; Application Gateway\'s default is 20 s). It must cover the slowest request, a 100 MB raw upload to POST /api/jobs, stay under the 230 s the Functions front end allows an HTTP response, and exceed the 15 s event-stream heartbeat. Submit itself answers in a few seconds: everything slower is a 202 that clients poll with Retry-After (1-30 s).')
@minValue(30)
@maxValue(220)
param backendTimeoutSeconds int = 120

@description('Optional. Client IP addresses or CIDR ranges allowed through the gateway, on top of the function key every client sends. Empty: any address (the key still decides).')
param allowedClientAddresses array = []

@description('Optional. Most autoscale instances.')
@minValue(2)
@maxValue(125)
param maxCapacity int = 10


resource publicIp 'Microsoft.Network/publicIPAddresses@2023-11-01' = {
  name: publicIpName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    dnsSettings: {
      domainNameLabel: dnsLabel
    }
  }
}

resource wafPolicy 'Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies@2023-11-01' = {
  name: wafPolicyName
  location: location
  tags: tags
  properties: {
    policySettings: {
      state: 'Enabled'
      mode: 'Prevention'
      requestBodyCheck: true
      // Raw CSV submits are up to 100 MB: inspect the first 128 KB and let the rest through instead of
      // rejecting every body over the inspection limit.
      requestBodyInspectLimitInKB: 128
      requestBodyEnforcement: false
      maxRequestBodySizeInKb: 2000
      fileUploadEnforcement: true
      fileUploadLimitInMb: 100
    }
    customRules: concat([
      {
        // GET /api/health reports queue depths and job counts: the gateway's probe reaches the backend
        // directly, callers from outside never.
        name: 'HealthIsInternal'
        priority: 1
        ruleType: 'MatchRule'
        action: 'Block'
        matchConditions: [
          {
            matchVariables: [
              {
                variableName: 'RequestUri'
              }
            ]
            operator: 'BeginsWith'
            negationConditon: false
            matchValues: [
              '/api/health'
            ]
            transforms: [
              'Lowercase'
            ]
          }
        ]
      }
    ], empty(allowedClientAddresses) ? [] : [
      {
        name: 'AllowListedClientsOnly'
        priority: 2
        ruleType: 'MatchRule'
        action: 'Block'
        matchConditions: [
          {
            matchVariables: [
              {
                variableName: 'RemoteAddr'
              }
            ]
            operator: 'IPMatch'
            // The ARM schema spells it this way.
            negationConditon: true
            matchValues: allowedClientAddresses
          }
        ]
      }
    ])
    managedRules: {
      managedRuleSets: [
        {
          ruleSetType: 'OWASP'
          ruleSetVersion: '3.2'
        }
      ]
    }
  }
}

var gatewayId = resourceId('Microsoft.Network/applicationGateways', name)

resource applicationGateway 'Microsoft.Network/applicationGateways@2023-11-01' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityResourceId}': {}
    }
  }
  properties: {
    sku: {
      name: 'WAF_v2'
      tier: 'WAF_v2'
    }
    autoscaleConfiguration: {
      minCapacity: 0
      maxCapacity: maxCapacity
    }
    firewallPolicy: {
      id: wafPolicy.id
    }
    sslPolicy: {
      policyType: 'CustomV2'
      minProtocolVersion: 'TLSv1_2'
      cipherSuites: [
        'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384'
        'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256'
        'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384'
        'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'
      ]
    }
    gatewayIPConfigurations: [
      {
        name: 'gateway-ip'
        properties: {
          subnet: {
            id: subnetResourceId
          }
        }
      }
    ]
    sslCertificates: [
      {
        name: 'public-certificate'
        properties: {
          keyVaultSecretId: certificateSecretUri
        }
      }
    ]
    frontendIPConfigurations: [
      {
        name: 'public-frontend'
        properties: {
          publicIPAddress: {
            id: publicIp.id
          }
        }
      }
    ]
    frontendPorts: [
      {
        name: 'https'
        properties: {
          port: 443
        }
      }
    ]
    backendAddressPools: [
      {
        name: 'function-app'
        properties: {
          backendAddresses: [
            {
              fqdn: functionAppHostName
            }
          ]
        }
      }
    ]
    probes: [
      {
        name: 'function-app-health'
        properties: {
          protocol: 'Https'
          path: '/api/health'
          interval: 30
          timeout: 10
          unhealthyThreshold: 3
          pickHostNameFromBackendHttpSettings: true
          match: {
            // GET /api/health needs no key and answers 503 when storage is unreachable.
            statusCodes: [
              '200-399'
            ]
          }
        }
      }
    ]
    backendHttpSettingsCollection: [
      {
        name: 'function-app-https'
        properties: {
          port: 443
          protocol: 'Https'
          cookieBasedAffinity: 'Disabled'
          pickHostNameFromBackendAddress: true
          requestTimeout: backendTimeoutSeconds
          probe: {
            id: '${gatewayId}/probes/function-app-health'
          }
        }
      }
    ]
    httpListeners: [
      {
        name: 'https-listener'
        properties: {
          protocol: 'Https'
          frontendIPConfiguration: {
            id: '${gatewayId}/frontendIPConfigurations/public-frontend'
          }
          frontendPort: {
            id: '${gatewayId}/frontendPorts/https'
          }
          sslCertificate: {
            id: '${gatewayId}/sslCertificates/public-certificate'
          }
        }
      }
    ]
    requestRoutingRules: [
      {
        name: 'api'
        properties: {
          ruleType: 'Basic'
          priority: 100
          httpListener: {
            id: '${gatewayId}/httpListeners/https-listener'
          }
          backendAddressPool: {
            id: '${gatewayId}/backendAddressPools/function-app'
          }
          backendHttpSettings: {
            id: '${gatewayId}/backendHttpSettingsCollection/function-app-https'
          }
        }
      }
    ]
  }
}

output name string = applicationGateway.name
output resourceId string = applicationGateway.id
output publicUrl string = 'https://${publicIp.properties.dnsSettings.fqdn}'
