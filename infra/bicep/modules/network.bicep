// The gateway's virtual network. Its one subnet has the Microsoft.Web service endpoint, so the function
// app's access restrictions can name it: the app then answers only the gateway. Application Gateway
// sits in the subnet; API Management (StandardV2) integrates its outbound traffic into it, which needs
// the subnet delegated to Microsoft.Web/serverFarms and used by nothing else.

@description('Required. Virtual network name.')
param name string

@description('Required. Azure region.')
param location string

@description('Optional. Tags for the resource.')
param tags object = {}

@description('Optional. Which gateway uses the subnet: applicationGateway (deployed into it) or apiManagement (outbound VNet integration, delegated to Microsoft.Web/serverFarms).')
@allowed([
  'applicationGateway'
  'apiManagement'
])
param gatewayType string = 'applicationGateway'

@description('Optional. Address space of the virtual network; the gateway\'s subnet takes all of it (API Management asks for at least a /27 for outbound integration).')
param addressPrefix string = '10.42.0.0/24'

var forApiManagement = gatewayType == 'apiManagement'

// API Management v2 outbound integration runs on the App Service VNet integration machinery.
var apiManagementDelegation = [
  {
    name: 'Microsoft.Web.serverFarms'
    properties: {
      serviceName: 'Microsoft.Web/serverFarms'
    }
  }
]

// Only for API Management: an NSG on Application Gateway v2's subnet would have to open the
// GatewayManager ports, and that subnet does not need one.
resource apiManagementNsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = if (forApiManagement) {
  name: 'nsg-${name}'
  location: location
  tags: tags
  properties: {}
}

resource virtualNetwork 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: forApiManagement ? 'snet-apim' : 'snet-appgateway'
        properties: {
          addressPrefix: addressPrefix
          serviceEndpoints: [
            {
              service: 'Microsoft.Web'
            }
          ]
          delegations: forApiManagement ? apiManagementDelegation : []
          networkSecurityGroup: forApiManagement ? {
            id: apiManagementNsg.id
          } : null
        }
      }
    ]
  }
}

output name string = virtualNetwork.name
output gatewaySubnetResourceId string = virtualNetwork.properties.subnets[0].id
